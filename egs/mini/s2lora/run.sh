#!/usr/bin/env bash
# S2-LoRA on the mini corpus: the child-speech condition (English, high pitch and fast rate, read
# and conversational utterances) plays CSRC-2021's Chinese child speech, and ../run.sh stage 7's
# student (whisper-base, zero-shot) plays whisper-medium. The method
# stages are the ones of the real recipe (local/recipes/s2lora.sh): zero-shot, full fine-tuning,
# GLoRA, AdaLoRA, LoRA, BitFit, IA3, alpha-LoRA and S2-LoRA, the rank heatmap, Table 2.
#   ./run.sh                                  # everything: foundation models, methods, report
#   ./run.sh --stage 10 --stop-stage 10       # only the zero-shot decodes
#   ./run.sh --train-size 100 --stage 1       # fewer adaptation utterances (the paper's 1K/10K)
# Test sets: child (mini_child test: in domain), adult (mini_asr test of the same language:
# forgetting, as the paper's adult zh-A1) and cross_<lang> (mini_asr test of another language
# the foundation model knows, as the paper's en/zh-HK; CER for languages written without spaces).
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

DEFAULT_TRAIN_SIZE=100  # other sizes write exp/s2lora_<size> (the paper's 1K/10K/30K ablation)
stage=0
stop_stage=100
nj=2
seed=0
mini_data=../data       # the mini corpus (made by ../run.sh stages 0-6)
mini_exp=../exp         # ../run.sh's experiments (the foundation models of stage 7)
foundation=student      # the Whisper to adapt: student (whisper-base) or teacher (fine-tuned)
encoder_window=12       # encoder input in seconds (the longest utterance used is 11.2 s; "" keeps 18 s)
language=en             # language of the child speech (the mini child corpus is English)
cross_languages="zh"    # other languages tested for cross-lingual effects ("" for none)
train_size=$DEFAULT_TRAIN_SIZE  # adaptation utterances: a number drawn at random, or all
test_size=40            # utterances of the adult and cross-lingual test sets (child test: all)
data=data
expdir=exp
systems="full glora adalora lora bitfit ia3 alpha_lora s2lora"
# whisper-base on 2 CPU cores: 2 epochs of 8-utterance steps instead of 3 of 2 x 8
train_opts="--epochs 2 --max-cuts 8 --accum-grad 1 --max-duration 60"
decode_opts="--num-beams 1 --max-duration 120 --tokens-per-second 30"
decode_nj=$nj           # test sets decoded at once
rank_adalora=adalora    # AdaLoRA system of the rank heatmap (adalora_fig3: the paper's ranks 8 -> 4)
param_table_size=medium # Table 2 is for whisper-medium (built from config, no weights)
force=false
results=RESULTS.md

help_message="Usage: $0 [options]: S2-LoRA on the mini child-speech corpus; results in \$results"
. "$RECIPE_DIR/local/parse_options.sh" || exit 1
mini_data=$(cd "$RECIPE_DIR" && readlink -f "$mini_data")
mini_exp=$(cd "$RECIPE_DIR" && readlink -f "$mini_exp")
cd "$RECIPE_DIR"
. ./path.sh
. ./cmd.sh
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
mkdir -p "$expdir/log" "$data"
echo "$RUN_COMMAND" >> "$expdir/commands.log"

if ! [[ $train_size =~ ^([0-9]+|all)$ ]] || ! [[ $test_size =~ ^([0-9]+|all)$ ]]; then
  log "--train-size and --test-size must be numbers of utterances or all," \
    "not '$train_size' / '$test_size'"; exit 1
fi
case $foundation in
  teacher|student) ;;
  *) log "--foundation must be teacher or student, not '$foundation'"; exit 1 ;;
esac

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: mini corpus, Whisper features and foundation models (../run.sh stages 0-7)"
  (cd .. && ./run.sh --stage 0 --stop-stage 7 --nj "$nj" --seed "$seed" --data "$mini_data" \
    --expdir "$mini_exp" --force "$force")
fi

whisper_fbank=$mini_data/whisper_fbank
metric_of() {  # CER for languages written without spaces, WER otherwise
  case $1 in zh|ja|th|yue|lo|my) echo cer ;; *) echo wer ;; esac
}
subset() {  # subset <name> <input cuts> <output> <per-language> <languages...>
  local name=$1 cuts=$2 out=$3 size=$4; shift 4
  if stage_needed "subset_$name" "$cuts" "$out" "$* size=$size seed=$seed"; then
    python -m speechkd.bin.subsample_cuts --cuts "$cuts" --out "$out" --per-language "$size" \
      --by random --seed "$seed" --languages "$@" \
      --path-prefix "$RECIPE_DIR/.."  # ../run.sh's relative paths, made absolute
    stage_done "subset_$name" "$cuts" "$out" "$* size=$size seed=$seed"
  fi
}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: child train ($train_size utterances), adult $language and cross-lingual" \
    "(${cross_languages:-none}) test sets"
  subset "child_train_$train_size" "$whisper_fbank/mini_child_cuts_train.jsonl.gz" \
    "$data/child_cuts_train_$train_size.jsonl.gz" "$train_size" "$language"
  for split in dev test; do
    subset "child_$split" "$whisper_fbank/mini_child_cuts_$split.jsonl.gz" \
      "$data/child_cuts_$split.jsonl.gz" all "$language"
  done
  subset "adult_$language" "$whisper_fbank/mini_asr_cuts_test.jsonl.gz" \
    "$data/adult_cuts_test_$language.jsonl.gz" "$test_size" "$language"
  for lang in $cross_languages; do
    subset "cross_$lang" "$whisper_fbank/mini_asr_cuts_test.jsonl.gz" \
      "$data/adult_cuts_test_$lang.jsonl.gz" "$test_size" "$lang"
  done
fi

foundation_dir=$mini_exp/whisper_foundation/$foundation/model
if [ -n "$encoder_window" ]; then  # a copy of the foundation with a shorter encoder input
  model_dir=$expdir/foundation_${foundation}_${encoder_window}s
else
  model_dir=$foundation_dir
fi
if [ $stage -le 1 ] && [ $stop_stage -ge 1 ] && [ -n "$encoder_window" ]; then
  log "Stage 1: the $foundation model with a $encoder_window s encoder window"
  window_whisper "$foundation_dir" "$model_dir" "$encoder_window"
fi

# the variables of the shared method stages
tokenizer=$mini_data/lang_whisper
train_cuts=$data/child_cuts_train_$train_size.jsonl.gz
if [ "$train_size" = "$DEFAULT_TRAIN_SIZE" ]; then
  method_exp=$expdir/s2lora
  report_title="S2-LoRA on the mini child speech (the mini $foundation foundation model)"
else
  method_exp=$expdir/s2lora_$train_size
  report_title="S2-LoRA on the mini child speech, $train_size adaptation utterances"
fi
dev_cuts=$data/child_cuts_dev.jsonl.gz
in_domain_sets="child=$data/child_cuts_test.jsonl.gz,$(metric_of "$language")"
out_of_domain_sets="adult=$data/adult_cuts_test_$language.jsonl.gz,$(metric_of "$language")"
for lang in $cross_languages; do
  out_of_domain_sets+=" cross_$lang=$data/adult_cuts_test_$lang.jsonl.gz,$(metric_of "$lang")"
done

. ./local/recipes/s2lora.sh

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  sections=()
  for report in "$expdir"/s2lora*/report.md; do
    [ -f "$report" ] && sections+=(--section "$report")
  done
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "S2-LoRA, mini recipe (seed=$seed)" --commands-file "$expdir/commands.log" \
    "${sections[@]}"
fi
log "done"
