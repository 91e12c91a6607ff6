#!/usr/bin/env bash
# PEPSI on the mini corpus: whisper-base zero-shot (../run.sh stage 7's student; --foundation
# teacher for its fine-tuned copy, which has already seen these languages) plays whisper-large-v2
# and is adapted to each low-resource target language (ko), with en as the high-resource control;
# the mini child-speech corpus (English) plays ClovaCall, the same language in another domain. The
# method stages are the ones of the real recipe (local/recipes/pepsi.sh); sizes and budgets are
# fitted to 2 CPU cores (40 training utterances a language, 2 epochs, IMP rounds of 1 epoch
# pruning 30% of what is alive: 2 rounds to 50%, where the paper prunes 10% a round for 2 epochs).
#   ./run.sh                                  # everything: foundation models, systems, report
#   ./run.sh --stage 10 --stop-stage 10       # only the zero-shot decodes
#   ./run.sh --languages "ko en" --fig4-languages ko --stage 1
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=2                    # parallel jobs of the data stages; languages trained at once
seed=0
mini_data=../data       # the mini corpus (made by ../run.sh stages 0-6)
mini_exp=../exp         # ../run.sh's experiments (the foundation models of stage 7)
foundation=student      # the Whisper to adapt: student (whisper-base) or teacher (fine-tuned)
encoder_window=14       # encoder input in seconds (the longest utterance used is 13.3 s; "" keeps 18 s)
languages="ko en"       # target languages: one model each (en: the high-resource control)
train_size=40           # training utterances per language (random; all: every one)
dev_size=20             # dev utterances per language (validation loss)
test_size=30            # test utterances per language and of the child speech
cer_languages="zh ja ko th"
data=data
expdir=exp
systems="ft lora lth lth_ft pepsi"
target_sparsity=0.5
fig4_languages=ko       # PEPSI Fig. 4: IMP on ko to 90%, every 10% decoded
fig4_milestones="0.1 0.3 0.5"  # (the paper: every 10% to 90%; up to the target costs no extra round)
subnet_pairs="ko:en"    # Table 1: tickets pruned on ko and on en, both decoded on ko
subnet_sparsities="0.19 0.3439"
transfer=true           # Table 4 analogue: tickets pruned on en (mini_asr) adapted to child speech
train_opts="--epochs 2 --max-cuts 8 --max-duration 60"
full_opts="--lr 1e-4"   # FFT and LTH-FT of whisper-base on 64 utterances (the yaml: 1e-5 for large)
imp_opts="--round-epochs 1 --rate 0.3 --max-cuts 8 --max-duration 60"
decode_opts="--max-duration 120 --tokens-per-second 30"
force=false
results=RESULTS.md

help_message="Usage: $0 [options]: PEPSI on the mini corpus; results in \$results"
. "$RECIPE_DIR/local/parse_options.sh" || exit 1
mini_data=$(cd "$RECIPE_DIR" && readlink -f "$mini_data")
mini_exp=$(cd "$RECIPE_DIR" && readlink -f "$mini_exp")
cd "$RECIPE_DIR"
. ./path.sh
. ./cmd.sh
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
for size in "$train_size" "$dev_size" "$test_size"; do
  if ! [[ $size =~ ^([0-9]+|all)$ ]]; then
    log "--train-size, --dev-size and --test-size must be numbers of utterances or all, not '$size'"
    exit 1
  fi
done
case $foundation in
  teacher|student) ;;
  *) log "--foundation must be teacher or student, not '$foundation'"; exit 1 ;;
esac
mkdir -p "$expdir/log" "$data"
echo "$RUN_COMMAND" >> "$expdir/commands.log"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: mini corpus, Whisper features and foundation models (../run.sh stages 0-7)"
  (cd .. && ./run.sh --stage 0 --stop-stage 7 --nj "$nj" --seed "$seed" --data "$mini_data" \
    --expdir "$mini_exp" --force "$force")
fi

whisper_fbank=$mini_data/whisper_fbank
if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: train/dev/test sets of each of $languages, and of the child speech (transfer)"
  for lang in $languages child; do
    for split in train dev test; do
      src=$whisper_fbank/mini_asr_cuts_$split.jsonl.gz
      out=$data/pepsi_cuts_${split}_$lang.jsonl.gz
      select=$lang
      if [ "$lang" = child ]; then
        src=$whisper_fbank/mini_child_cuts_$split.jsonl.gz
        select=en
      fi
      case $split in train) size=$train_size ;; dev) size=$dev_size ;; *) size=$test_size ;; esac
      if stage_needed "pepsi_subset_${split}_$lang" "$src" "$out" "seed=$seed size=$size"; then
        python -m speechkd.bin.subsample_cuts --cuts "$src" --out "$out" --per-language "$size" \
          --by random --seed "$seed" --languages "$select" \
          --path-prefix "$RECIPE_DIR/.."  # ../run.sh's relative paths, made absolute
        stage_done "pepsi_subset_${split}_$lang" "$src" "$out" "seed=$seed size=$size"
      fi
    done
  done
fi

foundation_dir=$mini_exp/whisper_foundation/$foundation/model
if [ -n "$encoder_window" ]; then  # a copy of the foundation with a shorter encoder input
  base_dir=$expdir/foundation_${foundation}_${encoder_window}s
  if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
    log "Stage 1: the $foundation model with a $encoder_window s encoder window"
    window_whisper "$foundation_dir" "$base_dir" "$encoder_window"
  fi
else
  base_dir=$foundation_dir
fi

# the variables of the shared method stages
tokenizer=$mini_data/lang_whisper
train_cuts="$data/pepsi_cuts_train_{lang}.jsonl.gz"
dev_cuts="$data/pepsi_cuts_dev_{lang}.jsonl.gz"
test_sets="test=$data/pepsi_cuts_test_{lang}.jsonl.gz"
method_exp=$expdir/pepsi
lang_jobs=$nj
train_opts="--seed $seed $train_opts"
imp_opts="--seed $seed $imp_opts"
report_title="PEPSI on the mini corpus (the mini $foundation Whisper as the foundation model)"
if [ "$transfer" = true ] && ! [[ " $languages " == *" en "* ]]; then
  log "--transfer true needs en among the languages (its ticket is adapted to child speech):" \
    "the transfer experiment is skipped"
elif [ "$transfer" = true ]; then
  transfer_name=child
  transfer_language=en
  transfer_train_cuts=$data/pepsi_cuts_train_child.jsonl.gz
  transfer_dev_cuts=$data/pepsi_cuts_dev_child.jsonl.gz
  transfer_test_sets="child_test=$data/pepsi_cuts_test_child.jsonl.gz"
fi

. ./local/recipes/pepsi.sh

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  sections=()
  [ -f "$method_exp/report.md" ] && sections+=(--section "$method_exp/report.md")
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "PEPSI, mini recipe (seed=$seed)" --commands-file "$expdir/commands.log" \
    "${sections[@]}"
fi
log "done"
