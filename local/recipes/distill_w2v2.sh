# DistillW2V2 method stages (10-19), shared by every corpus recipe (egs/<corpus>/distill_w2v2).
# Source me from a run.sh after its data stages, with path.sh, cmd.sh and local/stage_lib.sh
# loaded, $stage/$stop_stage/$nj set and these variables defined:
#   language        language of the labelled and unlabelled audio (cuts of other languages dropped)
#   pool_cuts       CutSets of the untranscribed distillation/pre-training pool (space separated)
#   train_cuts dev_cuts   labelled CutSets (teacher fine-tuning; dev also validates distillation)
#   test_sets       "name=cuts.jsonl.gz ..." the sets every system is scored on
#   lexicon         lexicon.txt (word -> phones) with phones.txt beside it: the phone units;
#                   built in stage 10 (G2P: $lexicon_spec) over the words of every set and of
#                   the den text sample when missing
#   den_text        raw text of the denominator's phone LM: text files (space separated, plain or
#                   .gz, one sentence per line), or "transcripts" (the labelled training text)
#   den_graph       denominator graph (speechkd.mmi text FSA over phones.txt); built in stage 11
#                   with "make_den_graph $den_graph_opts" (default: a $den_order-gram phone LM of
#                   a seeded sample of $den_max_sentences lines of $den_text, pronounced with
#                   $lexicon, random silence); a den graph there that this recipe did not build
#                   (no stamp) is used as given
#   method_exp      experiment directory of this run, e.g. exp/distill_w2v2
# Optional (defaults below): lm_text (raw text of the word n-gram LM; default: the training
# transcripts), conf_dir, pretrain_config, finetune_config, distill_config, student_arch, settings,
# main_setting, history, chunk, teacher_pretrained, teacher_finetuned, trust_fairseq_checkpoint,
# lexicon_spec, lexicon_text, pretrain_opts, finetune_opts, distill_opts, step2_opts, ngpu,
# den_silence, den_sil_prob, den_sil_prob_boundary, den_max_sentences, den_order, den_seed, den_oov,
# den_graph_opts, lm_order, decoders, den_decode, decode_opts, lm_decode_opts, path_prefix, rtf_models,
# rtf_opts.
#
# Stages:
#   10  transcripts ($method_exp/text/train.txt: the raw text of the labelled train set), the
#       phone lexicon if missing (the words of every set and of the den text sample; its phone
#       table has the silence phone), fairseq manifests: the unlabelled pool, labelled train/dev
#       (phones, words), test sets
#   11  denominator graph from raw text with random silence (fingerprinted) and the word n-gram LM
#   12  teacher T, wav2vec 2.0 pre-training (skipped with --teacher-pretrained/--teacher-finetuned)
#   13  teacher T, LF-MMI fine-tuning (skipped with --teacher-finetuned)
#   14  step 1, T -> SN (non-streaming student), for each ablation setting in $settings (M1-M4)
#   15  step 2, SN -> SS (chunk-streaming student, (history, chunk) frames), SS initialised from SN
#   16  single-step baseline, T -> SS directly
#   17  decoding of every system on every test set: best path (phone error rate), lexicon +
#       word LM (WER), and chunk-by-chunk streaming for SS
#   18  RTF/parameter table (python -m speechkd.bin.rtf) and the report (Tables 1-3)

: "${conf_dir:=$SPEECHKD_ROOT/conf/distill_w2v2}"
: "${pretrain_config:=pretrain_tiny}"     # $conf_dir/<name>.yaml (fairseq-hydra-train)
: "${finetune_config:=finetune_tiny_mmi}"
: "${distill_config:=distill_tiny}"
: "${student_arch:=tiny_student}"          # $conf_dir/arch/<name>.yaml
: "${settings:=M4}"                        # step-1 settings ($conf_dir/distill/<name>.yaml)
: "${main_setting:=M4}"                    # the SN that step 2 starts from
: "${history:=600}"                        # SS: frames of history before a chunk
: "${chunk:=48}"                           # SS: frames per chunk
: "${teacher_pretrained:=}"                # a pre-trained wav2vec 2.0 checkpoint (skips stage 12)
: "${teacher_finetuned:=}"                 # a fine-tuned teacher (skips stages 12-13)
: "${trust_fairseq_checkpoint:=false}"     # external fairseq checkpoints are pickles: opt in
: "${pretrain_opts:=}"                     # extra hydra overrides, e.g. "optimization.max_update=500"
: "${finetune_opts:=}"
: "${distill_opts:=}"                      # every distillation run (steps 1, 2, single step)
: "${step2_opts:=optimization.lr=[0.0001]}"  # step 2: the paper's lower peak learning rate
: "${ngpu:=0}"                             # 0: CPU
: "${lm_order:=4}"
: "${decode_opts:=}"
: "${decoders:=best_path lm streaming}"   # stage 17: which decodings (streaming: SS systems only)
: "${den_decode:=true}"  # decode through posteriors under the den graph (LF-MMI outputs)
: "${lm_decode_opts:=--lm-weight 1.0 --word-score 0 --beam 50}"
: "${lexicon_spec:=espeak:$language}"        # G2P of a lexicon built here (or cmudict:FILE)
: "${lexicon_text:=}"                      # more text whose words the built lexicon covers
: "${path_prefix:=}"                       # make relative audio paths of the cuts absolute
: "${rtf_models:=table}"
: "${rtf_opts:=--streaming}"

# The denominator (stage 11), as the paper's LF-MMI distillation objective (sec. 4.2) makes it:
# a phone LM of a large raw text corpus, one random pronunciation per word, silence inserted at
# random between words and at sentence edges "similar to [10]" (Hadian et al., end-to-end
# LF-MMI). The paper gives no probabilities; these are [10]'s, the defaults of Kaldi's
# steps/nnet3/chain/e2e/text_to_phones.py (--edge-silprob 0.8, --between-silprob 0.2).
: "${den_silence:=SIL}"                    # optional-silence phone (none: no silence)
: "${den_sil_prob:=0.2}"                   # between words
: "${den_sil_prob_boundary:=0.8}"          # at the start and at the end of a sentence
: "${den_max_sentences:=1000000}"          # a seeded sample of a huge corpus (0: every line)
: "${den_order:=4}"
: "${den_seed:=0}"                         # the sample, the pronunciations and the silences
: "${den_oov:=skip}"  # a sentence with a word outside $lexicon is left out (counted in stats.json)

for _var in language pool_cuts train_cuts dev_cuts test_sets lexicon den_text den_graph \
    method_exp; do
  if [ -z "${!_var:-}" ]; then
    log "local/recipes/distill_w2v2.sh: variable $_var is not set by the recipe"; exit 1
  fi
done
unset _var
if [ -n "$teacher_pretrained$teacher_finetuned" ] && [ "$trust_fairseq_checkpoint" != true ]; then
  log "--teacher-pretrained/--teacher-finetuned are fairseq pickles: pass" \
    "--trust-fairseq-checkpoint true for files you trust"
  exit 1
fi

# absolute paths: fairseq-hydra-train runs in its output directory
method_exp=$(readlink -m "$method_exp")
lexicon=$(readlink -m "$lexicon")
den_graph=$(readlink -m "$den_graph")
[ -z "$teacher_pretrained" ] || teacher_pretrained=$(readlink -m "$teacher_pretrained")
[ -z "$teacher_finetuned" ] || teacher_finetuned=$(readlink -m "$teacher_finetuned")
dw2_data=$method_exp/data
dw2_pool=$dw2_data/pool          # unlabelled: train.tsv (the pool), dev.tsv (validation)
dw2_asr=$dw2_data/asr            # labelled: {train,dev,<test sets>}.{tsv,wrd,ltr,phn}, dicts
phones=$(dirname "$lexicon")/phones.txt
dw2_lm=$method_exp/lm/word_${lm_order}gram.arpa
user_dir=$SPEECHKD_ROOT/speechkd/fairseq_plugin
if [ "$ngpu" -gt 0 ]; then
  dw2_device="common.cpu=false distributed_training.distributed_world_size=$ngpu"
else
  dw2_device="common.cpu=true distributed_training.distributed_world_size=1"
fi

dw2_export() {  # dw2_export <out_dir> <split> <cuts...> [-- extra export flags]
  local out=$1 split=$2; shift 2
  local cuts=() extra=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do cuts+=("$1"); shift; done
  [ "${1:-}" = -- ] && { shift; extra=("$@"); }
  local prefix=()
  [ -n "$path_prefix" ] && prefix=(--path-prefix "$path_prefix")
  python -m speechkd.bin.export_fairseq --cuts "${cuts[@]}" --split "$split" --language "$language" \
    --out-dir "$out" "${prefix[@]}" "${extra[@]}" --log-file "$method_exp/log/export_fairseq.log"
}

dw2_hydra_train() {  # dw2_hydra_train <name> <config> <log> <hydra overrides...>
  local name=$1 config=$2 logfile=$3; shift 3
  local dir=$method_exp/$name tb=()
  tensorboard_importable && tb=(common.tensorboard_logdir="$dir/tensorboard")
  # shellcheck disable=SC2086
  # fairseq's torch.load of its checkpoints (resuming, w2v_path, the teacher) unpickles them: they
  # are this recipe's own files or ones the user trusted above (--trust-fairseq-checkpoint true)
  $cuda_cmd "$logfile" env TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
    fairseq-hydra-train --config-dir "$conf_dir" --config-name "$config" \
      checkpoint.save_dir="$dir" hydra.run.dir="$dir" common.user_dir="$user_dir" \
      common.log_format=simple $dw2_device "${tb[@]}" "$@"
  [ -f "$dir/checkpoint_best.pt" ] || { log "$name: no $dir/checkpoint_best.pt (see $logfile)"; exit 1; }
}

dw2_describe() {  # dw2_describe <system dir> <checkpoint> <json fields...>: system.json
  python - "$@" <<'EOF'
import json
import sys

from speechkd.fairseq_plugin.checkpoints import load_fairseq_model
from speechkd.utils.atomic import atomic_write_text

system_dir, checkpoint, fields = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model, _, _ = load_fairseq_model(checkpoint, trust_pickle=True)  # written by this recipe
fields["params"] = sum(p.numel() for p in model.parameters())
fields["checkpoint"] = checkpoint
atomic_write_text(f"{system_dir}/system.json", json.dumps(fields, indent=2) + "\n")
EOF
}

dw2_teacher=${teacher_finetuned:-$method_exp/teacher/checkpoint_best.pt}
num_pdfs() { grep -c . "$phones"; }

dw2_text=$method_exp/text
: "${lm_text:=$dw2_text/train.txt}"
den_text_files=$den_text
if [ "$den_text" = transcripts ]; then den_text_files=$dw2_text/train.txt; fi
den_text_args=""
for _text in $den_text_files; do den_text_args+="--text $_text "; done
unset _text
den_text_args+="--max-sentences $den_max_sentences --seed $den_seed"
den_silence_args="--silence $den_silence --sil-prob $den_sil_prob"
den_silence_args+=" --sil-prob-boundary $den_sil_prob_boundary"
: "${den_graph_opts:=$den_text_args --lexicon $lexicon --oov $den_oov --unit phone
  $den_silence_args --order $den_order --topology ctc}"

dw2_check_den_text() {  # every den text file exists
  local text
  for text in $den_text_files; do
    [ -f "$text" ] && continue
    log "den text $text not found (--den-text: raw text files, or transcripts)"
    exit 1
  done
}
if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: transcripts, lexicon and fairseq manifests ($language)"
  mkdir -p "$method_exp/log"
  test_cuts=""
  for spec in $test_sets; do test_cuts="$test_cuts ${spec#*=}"; done
  # shellcheck disable=SC2086
  if stage_needed dw2_text "$train_cuts $dev_cuts $test_cuts" "$dw2_text" "language=$language"; then
    python -m speechkd.bin.cuts_to_text --cuts "$train_cuts" --language "$language" \
      --out "$dw2_text/train.txt"
    # shellcheck disable=SC2086
    python -m speechkd.bin.cuts_to_text --cuts "$train_cuts" "$dev_cuts" $test_cuts \
      --language "$language" --out "$dw2_text/all_sets.txt"
    # shellcheck disable=SC2086
    stage_done dw2_text "$train_cuts $dev_cuts $test_cuts" "$dw2_text" "language=$language"
  fi
  if [ ! -f "$lexicon" ]; then
    # pronunciations (G2P) of every word of every set and of the den text sample of stage 11
    # (same files, cap and seed), and the phone table of the denominator (its silence phone
    # first); no phone LM here
    dw2_check_den_text
    log "no $lexicon: a $lexicon_spec lexicon of the words of every set and of the den text"
    extra_text=(--lexicon-text "$dw2_text/all_sets.txt")
    for text in $lexicon_text; do extra_text+=(--lexicon-text "$text"); done
    # shellcheck disable=SC2086
    python -m speechkd.bin.make_den_graph --lexicon-only $den_text_args "${extra_text[@]}" \
      --lexicon "$lexicon_spec" --unit phone $den_silence_args \
      --out-dir "$(dirname "$lexicon")" --log-file "$method_exp/log/make_lexicon.log"
  fi
  # shellcheck disable=SC2086
  if stage_needed dw2_export "$pool_cuts $train_cuts $dev_cuts $lexicon $phones" "$dw2_data" \
      "language=$language test_sets=$test_sets path_prefix=$path_prefix"; then
    # shellcheck disable=SC2086
    dw2_export "$dw2_pool" train $pool_cuts -- --no-labels
    dw2_export "$dw2_pool" dev "$dev_cuts" -- --no-labels
    dw2_export "$dw2_asr" train "$train_cuts" -- --lexicon "$lexicon" --phones "$phones"
    dw2_export "$dw2_asr" dev "$dev_cuts" -- --lexicon "$lexicon" --phones "$phones"
    for spec in $test_sets; do
      dw2_export "$dw2_asr" "${spec%%=*}" "${spec#*=}" -- --lexicon "$lexicon" --phones "$phones"
    done
    # shellcheck disable=SC2086
    stage_done dw2_export "$pool_cuts $train_cuts $dev_cuts $lexicon $phones" "$dw2_data" \
      "language=$language test_sets=$test_sets path_prefix=$path_prefix"
  fi
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  log "Stage 11: denominator graph ($den_graph) from $den_text and the word $lm_order-gram LM"
  den_dir=$(dirname "$den_graph")
  if [ -f "$den_graph" ] && [ ! -f "${stamp_dir:-exp/.stages}/dw2_den_graph.json" ]; then
    log "using the given $den_graph (not built by this recipe)"
  else
    dw2_check_den_text
    if [ "$den_silence" != none ] && ! grep -q "^$den_silence " "$phones"; then
      log "$phones has no silence phone $den_silence: remove $(dirname "$lexicon") to rebuild" \
        "the lexicon with it, or pass --den-silence none"
      exit 1
    fi
    den_inputs="$den_text_files $lexicon $phones"
    if stage_needed dw2_den_graph "$den_inputs" "$den_dir" "$den_graph_opts"; then
      # shellcheck disable=SC2086
      python -m speechkd.bin.make_den_graph $den_graph_opts --phones "$phones" \
        --out-dir "$den_dir" --log-file "$method_exp/log/make_den_graph.log"
      stage_done dw2_den_graph "$den_inputs" "$den_dir" "$den_graph_opts"
    fi
  fi
  # shellcheck disable=SC2086
  if stage_needed dw2_word_lm "$lm_text $lexicon" "$dw2_lm" "order=$lm_order"; then
    # shellcheck disable=SC2086
    python -m speechkd.bin.train_word_lm --text $lm_text --order "$lm_order" \
      --vocabulary "$lexicon" --out "$dw2_lm" --log-file "$method_exp/log/train_word_lm.log"
    # shellcheck disable=SC2086
    stage_done dw2_word_lm "$lm_text $lexicon" "$dw2_lm" "order=$lm_order"
  fi
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  if [ -n "$teacher_pretrained$teacher_finetuned" ]; then
    log "Stage 12: teacher pre-training skipped (given: $teacher_pretrained$teacher_finetuned)"
  else
    log "Stage 12: teacher wav2vec 2.0 pre-training ($pretrain_config) on the pool"
    if stage_needed dw2_pretrain "$dw2_pool $conf_dir/$pretrain_config.yaml" \
        "$method_exp/pretrain/checkpoint_best.pt" "$pretrain_opts $dw2_device"; then
      # shellcheck disable=SC2086
      dw2_hydra_train pretrain "$pretrain_config" "$method_exp/log/pretrain.log" \
        task.data="$dw2_pool" $pretrain_opts
      stage_done dw2_pretrain "$dw2_pool $conf_dir/$pretrain_config.yaml" \
        "$method_exp/pretrain/checkpoint_best.pt" "$pretrain_opts $dw2_device"
    fi
  fi
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  if [ -n "$teacher_finetuned" ]; then
    log "Stage 13: teacher fine-tuning skipped (given: $teacher_finetuned)"
  else
    w2v=${teacher_pretrained:-$method_exp/pretrain/checkpoint_best.pt}
    log "Stage 13: teacher LF-MMI fine-tuning ($finetune_config) from $w2v"
    if stage_needed dw2_finetune "$dw2_asr $w2v $den_graph $conf_dir/$finetune_config.yaml" \
        "$method_exp/teacher/checkpoint_best.pt" "$finetune_opts $dw2_device"; then
      # shellcheck disable=SC2086
      dw2_hydra_train teacher "$finetune_config" "$method_exp/log/teacher.log" \
        task.data="$dw2_asr" model.w2v_path="$w2v" ++criterion.den_graph="$den_graph" \
        ++criterion.phones="$phones" $finetune_opts
      stage_done dw2_finetune "$dw2_asr $w2v $den_graph $conf_dir/$finetune_config.yaml" \
        "$method_exp/teacher/checkpoint_best.pt" "$finetune_opts $dw2_device"
    fi
  fi
  mkdir -p "$method_exp/teacher"
  dw2_describe "$method_exp/teacher" "$dw2_teacher" \
    '{"name": "teacher", "role": "teacher", "arch": "teacher", "variant": "teacher",
      "history": null, "chunk": null, "alpha": null, "beta": null, "setting": null,
      "teacher": null}'
fi

dw2_distill() {  # dw2_distill <name> <teacher ckpt> <init ckpt> <init mode> <setting> <variant> ...
  local name=$1 teacher=$2 init=$3 mode=$4 setting=$5 variant=$6; shift 6
  local streaming=()
  if [ "$variant" = ss ]; then
    streaming=(++model.extractor_mode=layer_norm ++model.causal_pos_conv=true
      ++model.chunk_size="$chunk" ++model.history_size="$history")
  else
    streaming=(++model.extractor_mode=group_norm ++model.causal_pos_conv=true)
  fi
  local conf="$conf_dir/$distill_config.yaml $conf_dir/distill/$setting.yaml"
  conf="$conf $conf_dir/arch/$student_arch.yaml"
  local params="$variant $history $chunk $distill_opts $* $dw2_device"
  if stage_needed "dw2_$name" "$dw2_pool $teacher $init $den_graph $conf" \
      "$method_exp/$name/checkpoint_best.pt" "$params"; then
    # shellcheck disable=SC2086
    dw2_hydra_train "$name" "$distill_config" "$method_exp/log/$name.log" \
      task.data="$dw2_pool" arch="$student_arch" distill="$setting" \
      ++criterion.teacher_path="$teacher" ++criterion.trust_teacher_checkpoint=true \
      ++criterion.den_graph="$den_graph" ++criterion.num_pdfs="$(num_pdfs)" \
      ++criterion.pdf_offset=3 ++criterion.blank=0 \
      ++model.init_from="$init" ++model.init_mode="$mode" ++model.trust_init_checkpoint=true \
      "${streaming[@]}" $distill_opts "$@"
    stage_done "dw2_$name" "$dw2_pool $teacher $init $den_graph $conf" \
      "$method_exp/$name/checkpoint_best.pt" "$params"
  fi
}

dw2_setting_weights() {  # "alpha, beta" of a setting file
  python - "$conf_dir/distill/$1.yaml" <<'EOF'
import json
import sys

import yaml

cfg = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
print(json.dumps({"alpha": cfg.get("alpha"), "beta": cfg.get("beta")})[1:-1])
EOF
}

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  for setting in $settings; do
    log "Stage 14: step 1, T -> SN ($student_arch, setting $setting)"
    dw2_distill "sn_$setting" "$dw2_teacher" "$dw2_teacher" teacher "$setting" sn
    dw2_describe "$method_exp/sn_$setting" "$method_exp/sn_$setting/checkpoint_best.pt" \
      "{\"name\": \"sn_$setting\", \"role\": \"step1\", \"arch\": \"$student_arch\",
        \"variant\": \"sn\", \"history\": null, \"chunk\": null, $(dw2_setting_weights "$setting"),
        \"setting\": \"$setting\", \"teacher\": \"teacher\"}"
  done
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  sn=$method_exp/sn_$main_setting/checkpoint_best.pt
  log "Stage 15: step 2, SN ($main_setting) -> SS (history $history, chunk $chunk)"
  # shellcheck disable=SC2086
  dw2_distill ss "$sn" "$sn" student "$main_setting" ss $step2_opts
  dw2_describe "$method_exp/ss" "$method_exp/ss/checkpoint_best.pt" \
    "{\"name\": \"ss\", \"role\": \"step2\", \"arch\": \"$student_arch\", \"variant\": \"ss\",
      \"history\": $history, \"chunk\": $chunk, $(dw2_setting_weights "$main_setting"),
      \"setting\": \"$main_setting\", \"teacher\": \"sn_$main_setting\"}"
fi

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  log "Stage 16: single-step baseline, T -> SS (history $history, chunk $chunk)"
  dw2_distill ss_single "$dw2_teacher" "$dw2_teacher" teacher "$main_setting" ss
  dw2_describe "$method_exp/ss_single" "$method_exp/ss_single/checkpoint_best.pt" \
    "{\"name\": \"ss_single\", \"role\": \"single_step\", \"arch\": \"$student_arch\",
      \"variant\": \"ss\", \"history\": $history, \"chunk\": $chunk,
      $(dw2_setting_weights "$main_setting"), \"setting\": \"$main_setting\",
      \"teacher\": \"teacher\"}"
fi

dw2_systems() {  # the trained systems, table order
  local s
  echo teacher
  for s in $settings; do echo "sn_$s"; done
  echo ss
  echo ss_single
}

dw2_decode() {  # dw2_decode <system> <set> <out suffix> [extra flags]
  local sys=$1 set=$2 suffix=$3; shift 3
  local dir=$method_exp/$sys checkpoint
  checkpoint=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["checkpoint"])' \
    "$dir/system.json")
  local out=$dir/decode_${set}$suffix den_args=()
  # LF-MMI outputs are pseudo log-likelihoods: read them through the den-graph posteriors
  [ "$den_decode" = true ] && den_args=(--den-graph "$den_graph")
  # the optional-silence phone: no phone of the references, the word boundary of the lexicon search
  if [ "$den_silence" != none ] && grep -q "^$den_silence " "$phones"; then
    den_args+=(--sil-token "$den_silence")
  fi
  if stage_needed "dw2_decode_${sys}_$set$suffix" "$checkpoint $dw2_asr/$set.tsv $dw2_lm" \
      "$out" "$decode_opts ${den_args[*]} $*"; then
    # shellcheck disable=SC2086
    $decode_cmd "$out/log/decode.log" \
      python -m speechkd.bin.w2v2_decode --checkpoint "$checkpoint" --trust-fairseq-checkpoint \
        --data "$dw2_asr" --subset "$set" --unit phone --out-dir "$out" --language "$language" \
        "${den_args[@]}" $decode_opts "$@"
    stage_done "dw2_decode_${sys}_$set$suffix" "$checkpoint $dw2_asr/$set.tsv $dw2_lm" \
      "$out" "$decode_opts ${den_args[*]} $*"
  fi
}

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  log "Stage 17: decoding (best path, lexicon + $lm_order-gram, streaming) of every system"
  for sys in $(dw2_systems); do
    [ -f "$method_exp/$sys/system.json" ] || { log "no $sys/system.json: run its stage"; exit 1; }
    for spec in $test_sets; do
      set=${spec%%=*}
      for decoder in $decoders; do
        case $decoder in
          best_path) dw2_decode "$sys" "$set" "" ;;
          # shellcheck disable=SC2086
          lm) dw2_decode "$sys" "$set" _lm --lexicon "$lexicon" --lm "$dw2_lm" $lm_decode_opts ;;
          streaming) case $sys in ss*) dw2_decode "$sys" "$set" _streaming --streaming ;; esac ;;
          *) log "unknown decoder '$decoder' in --decoders (best_path lm streaming)"; exit 1 ;;
        esac
      done
    done
  done
fi

if [ $stage -le 18 ] && [ $stop_stage -ge 18 ]; then
  log "Stage 18: RTF/parameter table ($rtf_models, single thread) and the report"
  if stage_needed dw2_rtf "$SPEECHKD_ROOT/conf/distill_w2v2/arch" "$method_exp/rtf.json" \
      "$rtf_models $rtf_opts"; then
    # shellcheck disable=SC2086
    python -m speechkd.bin.rtf --models "$rtf_models" $rtf_opts --json \
      --output "$method_exp/rtf.json" > "$method_exp/log/rtf.log" 2>&1
    stage_done dw2_rtf "$SPEECHKD_ROOT/conf/distill_w2v2/arch" "$method_exp/rtf.json" \
      "$rtf_models $rtf_opts"
  fi
  report_args=()
  for sys in $(dw2_systems); do report_args+=(--system "$sys=$method_exp/$sys"); done
  sets=()
  for spec in $test_sets; do sets+=("${spec%%=*}"); done
  python -m speechkd.bin.distill_w2v2_report "${report_args[@]}" --sets "${sets[@]}" \
    --rtf "$method_exp/rtf.json" --out "$method_exp/report.md"
fi
