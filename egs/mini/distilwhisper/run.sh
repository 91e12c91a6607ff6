#!/usr/bin/env bash
# DistilWhisper on the mini corpus: ../run.sh stage 7's teacher (whisper-base fine-tuned on the
# mini corpus) and student (whisper-base zero-shot) play whisper-large-v2 and whisper-small; the
# method stages are the ones of the real recipe (local/recipes/distilwhisper.sh).
#   ./run.sh                                  # everything: foundation models, baselines, report
#   ./run.sh --stage 10 --stop-stage 10       # only the zero-shot decodes
#   ./run.sh --train-size 60 --stage 1        # the training-size ablation (60 utts per language)
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

DEFAULT_TRAIN_SIZE=64  # other sizes are the training-size ablation (exp/distilwhisper_<size>)
stage=0
stop_stage=100
nj=2
seed=0
mini_data=../data       # the mini corpus (made by ../run.sh stages 0-6)
mini_exp=../exp         # ../run.sh's experiments (the foundation models of stage 7)
languages="ca cs th"    # target languages: one CLSR expert set each
train_size=$DEFAULT_TRAIN_SIZE  # training utterances per language: a number, or all (ablation)
dev_size=20             # dev utterances per language (the best epoch by dev WER decodes them)
test_size=30            # test and test_ood utterances per language
data=data
expdir=exp
systems="ft lora_ft clsr_ft distilwhisper distilwhisper_kl"
train_opts="--epochs 2 --lr 1e-4 --warmup-steps 2 --max-cuts 8 --max-duration 60"  # whisper-base
decode_opts="--max-duration 120 --tokens-per-second 30"  # a looping hypothesis stops at 30 tokens/s
top_k=64
measure_online_kd=false # one DistilWhisper epoch with the teacher run online (+ ~20 min)
report_rescore=cer      # the report adds CER tables and claims (Thai has no word spaces)
force=false
results=RESULTS.md

help_message="Usage: $0 [options]: DistilWhisper on the mini corpus; results in \$results"
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

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: mini corpus, Whisper features and foundation models (../run.sh stages 0-7)"
  (cd .. && ./run.sh --stage 0 --stop-stage 7 --nj "$nj" --seed "$seed" --data "$mini_data" \
    --expdir "$mini_exp" --force "$force")
fi

whisper_fbank=$mini_data/whisper_fbank
if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: train/dev/test sets of $languages (train: $train_size per language)"
  for split in train dev test test_ood; do
    case $split in train) size=$train_size ;; dev) size=$dev_size ;; *) size=$test_size ;; esac
    out=$data/dw_cuts_${split}_$size.jsonl.gz
    if stage_needed "subset_${split}_$size" "$whisper_fbank/mini_asr_cuts_$split.jsonl.gz" "$out" \
        "$languages seed=$seed"; then
      # shellcheck disable=SC2086
      python -m speechkd.bin.subsample_cuts --cuts "$whisper_fbank/mini_asr_cuts_$split.jsonl.gz" \
        --out "$out" --per-language "$size" --by random --seed "$seed" --languages $languages \
        --path-prefix "$RECIPE_DIR/.."  # ../run.sh's relative paths, made absolute
      stage_done "subset_${split}_$size" "$whisper_fbank/mini_asr_cuts_$split.jsonl.gz" "$out" \
        "$languages seed=$seed"
    fi
  done
fi

# the variables of the shared method stages
teacher_dir=$mini_exp/whisper_foundation/teacher/model
student_dir=$mini_exp/whisper_foundation/student/model
tokenizer=$mini_data/lang_whisper
train_cuts=$data/dw_cuts_train_$train_size.jsonl.gz
dev_cuts=$data/dw_cuts_dev_$dev_size.jsonl.gz
in_domain_sets="test=$data/dw_cuts_test_$test_size.jsonl.gz"
out_of_domain_sets="test_ood=$data/dw_cuts_test_ood_$test_size.jsonl.gz"
if [ "$train_size" = "$DEFAULT_TRAIN_SIZE" ]; then
  method_exp=$expdir/distilwhisper
  report_title="DistilWhisper on the mini corpus"
else
  method_exp=$expdir/distilwhisper_$train_size
  report_title="DistilWhisper on the mini corpus, $train_size training utterances per language"
fi
# gate usage of the other training sizes already run, for the plot
gate_systems=""
for other in "$expdir"/distilwhisper*/distilwhisper/decode; do
  [ -d "$other" ] && [ "$other" != "$method_exp/distilwhisper/decode" ] || continue
  size=${other#"$expdir"/distilwhisper}; size=${size%%/*}; size=${size#_}
  gate_systems="$gate_systems DistilWhisper-${size:-all}=$other"
done

. ./local/recipes/distilwhisper.sh

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  sections=()
  for report in "$expdir"/distilwhisper*/report.md; do
    [ -f "$report" ] && sections+=(--section "$report")
  done
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "DistilWhisper, mini recipe (seed=$seed)" --commands-file "$expdir/commands.log" \
    "${sections[@]}"
fi
log "done"
