# S2-LoRA method stages (10-15), shared by every corpus recipe (egs/<corpus>/s2lora): a Whisper
# model adapted to a low-resource domain with every parameter-composition PEFT method of the
# S2-LoRA paper (Liu et al., ICASSP 2024) and full fine-tuning, each scored on in-domain and
# out-of-domain test sets. Source me from a run.sh after its data stages, with path.sh, cmd.sh and
# local/stage_lib.sh loaded, $stage/$stop_stage/$nj set and these variables defined:
#   model_dir            the Whisper model to adapt (save_pretrained directory), e.g. whisper-medium
#   tokenizer            its tokenizer directory
#   train_cuts           CutSet of the adaptation data (supervision.language set)
#   in_domain_sets       "name=cuts.jsonl.gz[,metric] ..." test sets of the adaptation domain
#   out_of_domain_sets   "name=cuts.jsonl.gz[,metric] ..." other domains and languages
#                        (metric: cer or wer, default wer; the paper: CER for Chinese)
#   method_exp           experiment directory of this run, e.g. exp/s2lora_1k
# Optional (defaults below): dev_cuts, systems, s2_conf, train_opts, decode_opts, decode_nj,
# rank_adalora, param_table_size, report_title.
#
# Stages:
#   10  zero-shot decoding of $model_dir on every test set
#   11  training of every system from $s2_conf/<system>.yaml (adapters merged at export)
#   12  decoding of every trained system on every test set (greedy)
#   13  rank distribution of S2-LoRA and AdaLoRA ($rank_adalora) from their last checkpoints
#       (Fig. 3; the paper's figure used AdaLoRA with ranks 8 -> 4: system adalora_fig3)
#   14  trainable parameters of every method on whisper-$param_table_size (Table 2, from config)
#   15  report: error rates and trainable parameters, change against zero-shot, ranks

: "${systems:=full glora adalora lora bitfit ia3 alpha_lora s2lora}"  # Table 2's order
: "${s2_conf:=$SPEECHKD_ROOT/conf/s2lora}"  # <system>.yaml: whisper_train options (paper values)
: "${dev_cuts:=}"          # CutSet for the per-epoch validation loss (the paper has none)
: "${train_opts:=}"        # extra whisper_train flags for every system (they override the yaml)
: "${decode_opts:=--num-beams 1}"  # extra whisper_decode flags (the paper: greedy decoding)
: "${decode_nj:=1}"        # test sets decoded at once (each its own $cuda_cmd job)
: "${rank_adalora:=adalora}"  # the AdaLoRA system of the rank heatmap (or adalora_fig3)
: "${param_table_size:=medium}"    # Whisper size of the stage-14 table (the paper: medium)
: "${report_title:=S2-LoRA}"

for _var in model_dir tokenizer train_cuts in_domain_sets out_of_domain_sets method_exp; do
  if [ -z "${!_var:-}" ]; then
    log "local/recipes/s2lora.sh: variable $_var is not set by the recipe"; exit 1
  fi
done
unset _var

s2_sets="$in_domain_sets $out_of_domain_sets"
s2_run=${method_exp##*/}  # stamp names and the method column of RESULTS.md

s2_label() {  # the paper's name of a system
  case $1 in
    zeroshot) echo "Zero-shot" ;;
    full) echo "Full-FT" ;;
    lora) echo "LoRA" ;;
    adalora) echo "AdaLoRA" ;;
    adalora_fig3) echo "AdaLoRA (r 8→4)" ;;
    alpha_lora) echo "α-LoRA" ;;
    bitfit) echo "BitFit" ;;
    ia3) echo "IA3" ;;
    glora) echo "GLoRA" ;;
    s2lora) echo "S2-LoRA" ;;
    *) echo "$1" ;;
  esac
}

s2_description() {
  case $1 in
    full) echo "full fine-tuning of every weight (LR 1e-4)" ;;
    lora) echo "LoRA r=8 on q,v, merged" ;;
    adalora) echo "AdaLoRA on q,v, initial rank 12, target 8, merged" ;;
    adalora_fig3) echo "AdaLoRA on q,v, initial rank 8, target 4 (Fig. 3), merged" ;;
    alpha_lora) echo "alpha-LoRA r=8 on q,v (trainable scalar per matrix), merged" ;;
    bitfit) echo "BitFit: every bias" ;;
    ia3) echo "IA3 vectors on k, v, fc2 outputs, merged" ;;
    glora) echo "GLoRA r=8 on q,v, merged" ;;
    s2lora) echo "S2-LoRA r=8: shared B,A per module, sparse rank coefficients, merged" ;;
    *) echo "$1" ;;
  esac
}

s2_set_name() { echo "${1%%=*}"; }
s2_set_cuts() { local rest=${1#*=}; echo "${rest%%,*}"; }
s2_set_metric() {
  local rest=${1#*=}
  case $rest in *,*) echo "${rest##*,}" ;; *) echo wer ;; esac
}
for _spec in $s2_sets; do
  case $(s2_set_metric "$_spec") in
    cer|wer) ;;
    *) log "test set '$_spec': the metric after the comma must be cer or wer"; exit 1 ;;
  esac
done
unset _spec

# Test-set decodes run in the background, at most $decode_nj at once; s2_wait_all collects them.
s2_pids=()
s2_failed=0
s2_wait_first() {
  local pid=${s2_pids[0]}
  s2_pids=("${s2_pids[@]:1}")
  wait "$pid" || s2_failed=1
}
s2_spawn() {
  if [ "$decode_nj" -le 1 ]; then "$@"; return; fi
  while [ ${#s2_pids[@]} -ge "$decode_nj" ]; do s2_wait_first; done
  "$@" &
  s2_pids+=($!)
}
s2_wait_all() {
  while [ ${#s2_pids[@]} -gt 0 ]; do s2_wait_first; done
  if [ "$s2_failed" != 0 ]; then
    log "a decoding job failed: see the logs in $method_exp/*/decode/log"; exit 1
  fi
}

s2_decode_one() {  # s2_decode_one <system> <model-dir> <set spec>
  local sys=$1 model=$2 spec=$3
  local dir=$method_exp/$sys name cuts metric
  name=$(s2_set_name "$spec"); cuts=$(s2_set_cuts "$spec"); metric=$(s2_set_metric "$spec")
  local params="metric=$metric $decode_opts"
  if stage_needed "${s2_run}_decode_${sys}_$name" "$model $cuts" \
      "$dir/decode/scores-$name.json" "$params"; then
    # shellcheck disable=SC2086
    $cuda_cmd "$dir/decode/log/decode-$name.log" \
      python -m speechkd.bin.whisper_decode --model-dir "$model" --tokenizer "$tokenizer" \
        --cuts "$cuts" --set-name "$name" --out-dir "$dir/decode" --metric "$metric" \
        --no-progress $decode_opts
    stage_done "${s2_run}_decode_${sys}_$name" "$model $cuts" \
      "$dir/decode/scores-$name.json" "$params"
  fi
}

s2_decode() {  # s2_decode <system> <model-dir>: every test set
  local spec
  for spec in $s2_sets; do s2_spawn s2_decode_one "$1" "$2" "$spec"; done
}

s2_train() {  # s2_train <system>: train one system from $s2_conf/<system>.yaml
  local sys=$1 dir=$method_exp/$1 conf=$s2_conf/$1.yaml
  [ -f "$conf" ] || { log "no config $conf for system $sys"; exit 1; }
  local dev=()
  [ -n "$dev_cuts" ] && dev=(--dev-cuts "$dev_cuts")
  local inputs="$train_cuts $dev_cuts $model_dir $conf"
  local params="train_opts=$train_opts"
  if stage_needed "${s2_run}_train_$sys" "$inputs" "$dir/model $dir/params.json" "$params"; then
    # shellcheck disable=SC2086
    $cuda_cmd "$dir/log/whisper_train.log" \
      python -m speechkd.bin.whisper_train --config "$conf" --init-from "$model_dir" \
        --tokenizer "$tokenizer" --train-cuts "$train_cuts" "${dev[@]}" --exp-dir "$dir" \
        --method-name "$s2_run" --model-name "$sys" --description "$(s2_description "$sys")" \
        --resume --no-progress $train_opts
    stage_done "${s2_run}_train_$sys" "$inputs" "$dir/model $dir/params.json" "$params"
  fi
}

s2_last_checkpoint() {  # s2_last_checkpoint <exp dir>: its highest checkpoints/epoch-N, or ""
  local d e n=-1 last=""
  for d in "$1"/checkpoints/epoch-*; do
    [ -d "$d" ] || continue
    e=${d##*/epoch-}
    if [[ $e =~ ^[0-9]+$ ]] && [ "$e" -gt "$n" ]; then n=$e; last=$d; fi
  done
  echo "$last"
}

s2_has_system() { case " $systems " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: zero-shot $model_dir on: $s2_sets"
  s2_decode zeroshot "$model_dir"
  s2_wait_all
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  log "Stage 11: training $systems on $train_cuts"
  for sys in $systems; do s2_train "$sys"; done
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  log "Stage 12: decoding $systems ($decode_nj at once)"
  for sys in $systems; do s2_decode "$sys" "$method_exp/$sys/model"; done
  s2_wait_all
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  rank_args=()
  inputs=
  for sys in s2lora "$rank_adalora"; do
    s2_has_system "$sys" || continue
    ckpt=$(s2_last_checkpoint "$method_exp/$sys")
    [ -n "$ckpt" ] || { log "no checkpoint of $sys under $method_exp/$sys: run stage 11"; exit 1; }
    if [ "$sys" = s2lora ]; then flag=--s2lora; else flag=--adalora; fi
    rank_args+=("$flag" "$ckpt")
    inputs="$inputs $ckpt"
  done
  if [ ${#rank_args[@]} -eq 0 ]; then
    log "Stage 13: skipped (neither s2lora nor $rank_adalora among the systems)"
  else
    log "Stage 13: rank distribution (Fig. 3) from$inputs"
    if stage_needed "${s2_run}_ranks" "$inputs" "$method_exp/ranks.png $method_exp/ranks.json" \
        ""; then
      python -m speechkd.bin.pruning_plots ranks "${rank_args[@]}" --out "$method_exp/ranks.png" \
        --json "$method_exp/ranks.json"
      stage_done "${s2_run}_ranks" "$inputs" "$method_exp/ranks.png $method_exp/ranks.json" ""
    fi
  fi
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  log "Stage 14: trainable parameters of every method on whisper-$param_table_size (Table 2)"
  out=$method_exp/param_table.md
  if stage_needed "${s2_run}_param_table" "" "$out" "size=$param_table_size"; then
    mkdir -p "$method_exp/log"
    # the table's PEPSI part (not reported here) on the smallest size, for speed
    python -m speechkd.bin.peft_param_table --size "$param_table_size" --pepsi-size tiny \
      --out "$out" > "$method_exp/log/param_table.log" 2>&1 \
      || { log "peft_param_table failed: see $method_exp/log/param_table.log"; exit 1; }
    stage_done "${s2_run}_param_table" "" "$out" "size=$param_table_size"
  fi
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  log "Stage 15: report $method_exp/report.md"
  report_args=(--baseline "$(s2_label zeroshot)" --title "$report_title")
  report_args+=(--system "$(s2_label zeroshot)=$method_exp/zeroshot/decode")
  for sys in $systems; do
    dir=$method_exp/$sys
    report_args+=(--system "$(s2_label "$sys")=$dir/decode,$dir/params.json")
  done
  report_args+=(--in-domain)
  for spec in $in_domain_sets; do report_args+=("$(s2_set_name "$spec")"); done
  report_args+=(--out-of-domain)
  for spec in $out_of_domain_sets; do report_args+=("$(s2_set_name "$spec")"); done
  [ -f "$method_exp/ranks.png" ] && report_args+=(--ranks-plot "$method_exp/ranks.png")
  [ -f "$method_exp/ranks.json" ] && report_args+=(--ranks-json "$method_exp/ranks.json")
  [ -f "$method_exp/param_table.md" ] && report_args+=(--param-table "$method_exp/param_table.md")
  python -m speechkd.bin.s2lora_report "${report_args[@]}" --out "$method_exp/report.md"
fi
