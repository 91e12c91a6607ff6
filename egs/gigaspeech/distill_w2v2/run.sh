#!/usr/bin/env bash
# DistillW2V2 (two-step wav2vec 2.0 distillation, T1 -> S5 SN -> S5 SS) on GigaSpeech, as in the
# paper's Tables 2-4: the unlabelled pool is the XL subset without its transcripts, the labelled
# set S, the test sets DEV and TEST; GigaSpeech's punctuation and garbage tags are removed from
# the transcripts (cuts left without words are counted and left out); phones from a G2P lexicon.
#   ./run.sh --corpus-dir /data/GigaSpeech --teacher-pretrained /models/wav2vec_vox_new.pt \
#     --trust-fairseq-checkpoint true --ngpu 8
#   ./run.sh --corpus-dir /data/GigaSpeech --stage 0 --stop-stage 10   # data stages
# Data (stages 0-1): 0 GigaSpeech manifests (local/prepare_gigaspeech.sh), 1 transcripts without
# tags. Method stages 10-18: local/recipes/distill_w2v2.sh.
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=16
corpus_dir=           # GigaSpeech/ with GigaSpeech.json and audio/
pool_subset=XL        # unlabelled pool
pool_cuts=            # extra prepared pool manifests, space separated
train_subset=S        # labelled
dev_subset=DEV
test_subsets="DEV TEST"
language=en
lexicon_spec=espeak:en  # or cmudict:/path/to/cmudict.dict
data=data
expdir=exp
pretrain_config=pretrain_large
finetune_config=finetune_large_mmi
distill_config=distill_large
student_arch=S5
settings="M4"
main_setting=M4
history=600
chunk=48
teacher_pretrained=
teacher_finetuned=
trust_fairseq_checkpoint=false
pretrain_opts=
finetune_opts=
distill_opts=
step2_opts="optimization.lr=[0.0001] optimization.max_epoch=15"
ngpu=8
lm_text=              # default: the S transcripts
lm_order=4
decoders="best_path lm streaming"
decode_opts=
rtf_models=table
rtf_opts="--streaming"
force=false
results=RESULTS.md

help_message="Usage: $0 --corpus-dir DIR [options]; data in \$data, experiments in \$expdir"
. "$RECIPE_DIR/local/parse_options.sh" || exit 1
cd "$RECIPE_DIR"
. ./path.sh
. ./cmd.sh
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
mkdir -p "$expdir/log"
echo "$RUN_COMMAND" >> "$expdir/commands.log"

manifests=$data/manifests
read -ra all_subsets <<< "$(echo "$pool_subset $train_subset $dev_subset $test_subsets" \
  | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')"
cuts() { echo "$manifests/gigaspeech_cuts_$1.jsonl.gz"; }
clean() { echo "$data/notags/gigaspeech_cuts_$1.jsonl.gz"; }

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: GigaSpeech manifests of ${all_subsets[*]}"
  [ -n "$corpus_dir" ] || { log "give --corpus-dir"; exit 1; }
  outputs=""
  for subset in "${all_subsets[@]}"; do outputs+="$(cuts "$subset") "; done
  if stage_needed prepare_gigaspeech "$corpus_dir/GigaSpeech.json" "$outputs" "${all_subsets[*]}"; then
    local/prepare_gigaspeech.sh --corpus-dir "$corpus_dir" --output-dir "$manifests" \
      --subsets "${all_subsets[*]}" 2>&1 | tee "$expdir/log/prepare_gigaspeech.log"
    stage_done prepare_gigaspeech "$corpus_dir/GigaSpeech.json" "$outputs" "${all_subsets[*]}"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: transcripts without GigaSpeech's tags ($train_subset $dev_subset $test_subsets)"
  for subset in $(echo "$train_subset $dev_subset $test_subsets" | tr ' ' '\n' | sort -u); do
    if stage_needed "notags_$subset" "$(cuts "$subset")" "$(clean "$subset")" ""; then
      python -m speechkd.bin.drop_text_tags --cuts "$(cuts "$subset")" --out "$(clean "$subset")" \
        --log-file "$expdir/log/drop_text_tags.log"
      stage_done "notags_$subset" "$(cuts "$subset")" "$(clean "$subset")" ""
    fi
  done
fi

# the variables of the shared method stages
pool_cuts="$pool_cuts $(cuts "$pool_subset")"
train_cuts=$(clean "$train_subset")
dev_cuts=$(clean "$dev_subset")
test_sets=""
for subset in $test_subsets; do test_sets="$test_sets $subset=$(clean "$subset")"; done
lexicon=$data/lang_phone/lexicon.txt
den_graph=$data/lang_den/den.fst.txt
method_exp=$expdir/distill_w2v2
[ -n "$lm_text" ] || unset lm_text

. ./local/recipes/distill_w2v2.sh

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "DistillW2V2, GigaSpeech" --commands-file "$expdir/commands.log" \
    --section "$method_exp/report.md"
fi
log "done"
