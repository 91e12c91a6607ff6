# DistilWhisper method stages (10-19), shared by every corpus recipe (egs/<corpus>/distilwhisper).
# Source me from a run.sh after its data stages, with path.sh, cmd.sh and local/stage_lib.sh
# loaded, $stage/$stop_stage/$nj set and these variables defined:
#   languages            target languages (one CLSR expert set each), e.g. "ca cs th"
#   teacher_dir          teacher Whisper model directory (save_pretrained), e.g. whisper-large-v2
#   student_dir          student Whisper model directory, e.g. whisper-small
#   tokenizer            tokenizer directory shared by teacher and student
#   train_cuts dev_cuts  CutSets (all target languages; supervision.language set; every
#                        target language needs dev cuts: the best epoch has the lowest dev WER)
#   in_domain_sets       "name=cuts.jsonl.gz ..." test sets of the training domain
#   out_of_domain_sets   "name=cuts.jsonl.gz ..." test sets of another domain
#   method_exp           experiment directory of this run, e.g. exp/distilwhisper_10k
# Optional (defaults below): systems, dw_conf, train_opts, decode_opts, top_k, cache_opts,
# measure_online_kd, gate_systems, report_title, report_rescore.
#
# Stages:
#   10  zero-shot decoding of the teacher and the student
#   11  fine-tuning baselines, one model per target language (its own train and dev cuts):
#       FT (all weights), LoRA-FT (fc1/fc2, r = 64)
#   12  CLSR-FT: language experts and gates, no KD
#   13  teacher top-k cache of the training set (job array over $nj shards, then merged)
#   14  DistilWhisper (JS) and its KL variants from the cache
#   15  cost of one online-teacher KD epoch (the cache's speed-up)
#   16  decoding of every trained system on every test set (CLSR: hard gates, gate usage; FT and
#       LoRA-FT: each language's cuts by that language's model)
#   Every system keeps the epoch with the lowest dev WER (select_by in $dw_conf/<system>.yaml).
#   17  report: Table 1, gap closed, parameters, gate activation plot

: "${systems:=ft lora_ft clsr_ft distilwhisper distilwhisper_kl}"
: "${dw_conf:=$SPEECHKD_ROOT/conf/distilwhisper}"  # <system>.yaml: whisper_train options
: "${train_opts:=}"        # extra whisper_train flags for every system (they override the yaml)
: "${decode_opts:=}"       # extra whisper_decode flags
: "${top_k:=64}"           # teacher cache size per position
: "${cache_opts:=}"        # extra cache_teacher flags
: "${measure_online_kd:=true}"
: "${report_rescore:=}"    # metrics the report adds from the same hypotheses (e.g. cer)
: "${gate_systems:=}"      # more "LABEL=DECODE_DIR" for the gate plot (e.g. other train sizes)
: "${report_title:=DistilWhisper}"

for _var in languages teacher_dir student_dir tokenizer train_cuts dev_cuts in_domain_sets \
    out_of_domain_sets method_exp; do
  if [ -z "${!_var:-}" ]; then
    log "local/recipes/distilwhisper.sh: variable $_var is not set by the recipe"; exit 1
  fi
done
unset _var

dw_sets="$in_domain_sets $out_of_domain_sets"
dw_cache=$method_exp/teacher_cache

dw_is_clsr() { case $1 in clsr_ft|distilwhisper*) return 0 ;; *) return 1 ;; esac; }
dw_is_kd() { case $1 in distilwhisper*) return 0 ;; *) return 1 ;; esac; }
# FT and LoRA-FT: one model per target language, as in the paper
dw_is_per_language() { case $1 in ft|lora_ft) return 0 ;; *) return 1 ;; esac; }

dw_language_cuts() {  # dw_language_cuts <lang>: its train and dev cuts, $method_exp/data/<lang>/
  local lang=$1 split cuts out
  for split in train dev; do
    cuts=$train_cuts
    [ "$split" = dev ] && cuts=$dev_cuts
    out=$method_exp/data/$lang/$split.jsonl.gz
    if stage_needed "dw_cuts_${split}_$lang" "$cuts" "$out" "language=$lang"; then
      python -m speechkd.bin.subsample_cuts --cuts "$cuts" --out "$out" --per-language all \
        --by random --languages "$lang"
      stage_done "dw_cuts_${split}_$lang" "$cuts" "$out" "language=$lang"
    fi
  done
}

dw_train() {  # dw_train <system> [<lang>]: train one system from conf/<system>.yaml (with <lang>:
  # on that language's cuts only, into $method_exp/<system>/<lang>)
  local sys=$1 lang=${2:-} conf=$dw_conf/$1.yaml
  [ -f "$conf" ] || { log "no config $conf for system $sys"; exit 1; }
  local dir=$method_exp/$sys name=$sys train=$train_cuts dev=$dev_cuts
  local description params="languages=$languages train_opts=$train_opts"
  description=$(dw_description "$sys")
  if [ -n "$lang" ]; then
    dw_language_cuts "$lang"
    dir=$dir/$lang name=${sys}_$lang description="$description, $lang only"
    train=$method_exp/data/$lang/train.jsonl.gz dev=$method_exp/data/$lang/dev.jsonl.gz
    params="language=$lang train_opts=$train_opts"
  fi
  local extra=()
  if dw_is_clsr "$sys"; then
    # shellcheck disable=SC2206
    extra+=(--clsr-languages $languages)
  fi
  if dw_is_kd "$sys"; then extra+=(--kd-cache "$dw_cache"); fi
  local inputs="$train $dev $student_dir $conf"
  dw_is_kd "$sys" && inputs="$inputs $dw_cache"
  local out=$dir/results_meta.json
  if stage_needed "dw_train_$name" "$inputs" "$out" "$params"; then
    # shellcheck disable=SC2086
    $cuda_cmd "$dir/log/whisper_train.log" \
      python -m speechkd.bin.whisper_train --config "$conf" --init-from "$student_dir" \
        --tokenizer "$tokenizer" --train-cuts "$train" --dev-cuts "$dev" \
        --exp-dir "$dir" --method-name distilwhisper --model-name "$name" \
        --description "$description" --resume --no-progress "${extra[@]}" $train_opts
    stage_done "dw_train_$name" "$inputs" "$out" "$params"
  fi
}

dw_description() {
  case $1 in
    zeroshot_teacher) echo "teacher, zero-shot" ;;
    zeroshot_student) echo "student, zero-shot" ;;
    ft) echo "student, full fine-tuning" ;;
    lora_ft) echo "student, LoRA (r=64) on fc1/fc2, merged" ;;
    clsr_ft) echo "student + CLSR experts, L_CE + L_g" ;;
    distilwhisper) echo "student + CLSR experts, L_CE + L_g + 2 JS(teacher, student)" ;;
    distilwhisper_kl) echo "student + CLSR experts, L_CE + L_g + 2 KL(teacher, student)" ;;
    distilwhisper_kl_t3) echo "as distilwhisper_kl at temperature 3" ;;
    *) echo "$1" ;;
  esac
}

dw_decode() {  # dw_decode <system> <model> [whisper_decode flags]: decode every test set with
  # <model>, a model directory or "LANG=DIR ..." (one model per language: each decodes its cuts)
  local sys=$1 model=$2; shift 2
  local dir=$method_exp/$sys name cuts spec inputs=$model model_args=(--model-dir "$model")
  if [[ $model == *=* ]]; then
    # shellcheck disable=SC2206
    model_args=(--language-models $model)
    inputs=$(for spec in $model; do printf '%s ' "${spec#*=}"; done)
  fi
  for spec in $dw_sets; do
    name=${spec%%=*}; cuts=${spec#*=}
    if stage_needed "dw_decode_${sys}_$name" "$inputs $cuts" "$dir/decode/scores-$name.json" \
        "$decode_opts $*"; then
      # shellcheck disable=SC2086
      $cuda_cmd "$dir/decode/log/decode-$name.log" \
        python -m speechkd.bin.whisper_decode "${model_args[@]}" --tokenizer "$tokenizer" \
          --cuts "$cuts" --set-name "$name" --out-dir "$dir/decode" --no-progress \
          "$@" $decode_opts
      stage_done "dw_decode_${sys}_$name" "$inputs $cuts" "$dir/decode/scores-$name.json" \
        "$decode_opts $*"
    fi
  done
}

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: zero-shot teacher and student on: $dw_sets"
  dw_decode zeroshot_teacher "$teacher_dir"
  dw_decode zeroshot_student "$student_dir"
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  log "Stage 11: fine-tuning baselines (FT, LoRA-FT), one model per language: $languages"
  for sys in $systems; do
    if dw_is_per_language "$sys"; then
      for lang in $languages; do dw_train "$sys" "$lang"; done
    fi
  done
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  log "Stage 12: CLSR-FT (language experts for: $languages)"
  for sys in $systems; do
    case $sys in clsr_ft) dw_train "$sys" ;; esac
  done
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  log "Stage 13: teacher top-$top_k cache of $train_cuts ($nj shards)"
  params="top_k=$top_k $cache_opts"
  if stage_needed dw_teacher_cache "$teacher_dir $train_cuts" "$dw_cache/index.json" "$params"; then
    # shellcheck disable=SC2086
    $cuda_cmd JOB=1:$nj "$dw_cache/log/cache.JOB.log" \
      python -m speechkd.bin.cache_teacher --model-dir "$teacher_dir" --tokenizer "$tokenizer" \
        --cuts "$train_cuts" --out-dir "$dw_cache" --top-k "$top_k" --shard JOB/$nj $cache_opts
    python -m speechkd.bin.cache_teacher --model-dir "$teacher_dir" --tokenizer "$tokenizer" \
      --cuts "$train_cuts" --out-dir "$dw_cache" --top-k "$top_k" --merge "$nj"
    stage_done dw_teacher_cache "$teacher_dir $train_cuts" "$dw_cache/index.json" "$params"
  fi
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  log "Stage 14: DistilWhisper and KD variants from the teacher cache"
  for sys in $systems; do
    dw_is_kd "$sys" && dw_train "$sys"
  done
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ] && [ "$measure_online_kd" = true ]; then
  log "Stage 15: one DistilWhisper epoch with the teacher run online (for the cache speed-up)"
  dir=$method_exp/online_kd_epoch
  conf=$dw_conf/distilwhisper.yaml
  params="languages=$languages train_opts=$train_opts"
  if stage_needed dw_online_epoch "$train_cuts $teacher_dir $student_dir $conf" \
      "$dir/train-summary.json" "$params"; then
    # shellcheck disable=SC2086
    $cuda_cmd "$dir/log/whisper_train.log" \
      python -m speechkd.bin.whisper_train --config "$conf" --init-from "$student_dir" \
        --tokenizer "$tokenizer" --train-cuts "$train_cuts" --dev-cuts "$dev_cuts" \
        --exp-dir "$dir" --clsr-languages $languages --kd-teacher "$teacher_dir" --resume --no-progress \
        $train_opts --epochs 1 --select-by loss --export-dir "$dir/language_modules"
    stage_done dw_online_epoch "$train_cuts $teacher_dir $student_dir $conf" \
      "$dir/train-summary.json" "$params"
  fi
fi

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  log "Stage 16: decoding the trained systems"
  for sys in $systems; do
    if dw_is_clsr "$sys"; then
      dw_decode "$sys" "$student_dir" --language-modules "$method_exp/$sys/language_modules" \
        --languages all
    elif dw_is_per_language "$sys"; then
      models=""
      for lang in $languages; do models="$models $lang=$method_exp/$sys/$lang/model"; done
      dw_decode "$sys" "${models# }"
    else
      dw_decode "$sys" "$method_exp/$sys/model"
    fi
  done
fi

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  log "Stage 17: report $method_exp/report.md"
  report_args=(--small zeroshot_student --large zeroshot_teacher --title "$report_title")
  report_args+=(--system "zeroshot_teacher=$method_exp/zeroshot_teacher/decode")
  report_args+=(--system "zeroshot_student=$method_exp/zeroshot_student/decode")
  read -r first_language _ <<< "$languages"
  for sys in $systems; do
    params=$method_exp/$sys/params.json
    # one model per language, all of the same size: the first language's counts
    dw_is_per_language "$sys" && params=$method_exp/$sys/$first_language/params.json
    report_args+=(--system "$sys=$method_exp/$sys/decode,$params")
    if dw_is_clsr "$sys"; then
      report_args+=(--gate-system "$sys=$method_exp/$sys/decode")
    fi
  done
  for spec in $gate_systems; do report_args+=(--gate-system "$spec"); done
  report_args+=(--in-domain)
  for spec in $in_domain_sets; do report_args+=("${spec%%=*}"); done
  report_args+=(--out-of-domain)
  for spec in $out_of_domain_sets; do report_args+=("${spec%%=*}"); done
  speed_args=()
  if [ -f "$method_exp/online_kd_epoch/train-summary.json" ]; then
    speed_args=(--online-summary "$method_exp/online_kd_epoch/train-summary.json"
      --cached-summary "$method_exp/distilwhisper/train-summary.json"
      --cache-index "$dw_cache/index.json")
  fi
  # shellcheck disable=SC2086
  python -m speechkd.bin.distilwhisper_report "${report_args[@]}" "${speed_args[@]}" \
    --rescore $report_rescore \
    --out "$method_exp/report.md" --plot "$method_exp/gate_usage.png"
fi
