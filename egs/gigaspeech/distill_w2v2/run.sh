#!/usr/bin/env bash
# DistillW2V2 (two-step wav2vec 2.0 distillation, T1 -> S5 SN -> S5 SS) on GigaSpeech, as in the
# paper's Tables 2-4: the unlabelled pool is the XL subset without its transcripts, the labelled
# set S, the test sets DEV and TEST; GigaSpeech's punctuation and garbage tags are removed from
# the transcripts (cuts left without words are counted and left out); phones from a G2P lexicon;
# a 4-gram phone LM denominator from GigaSpeech's text with random silence.
#   ./run.sh --corpus-dir /data/GigaSpeech --teacher-pretrained /models/wav2vec_vox_new.pt \
#     --trust-fairseq-checkpoint true --ngpu 8
#   ./run.sh --corpus-dir /data/GigaSpeech --stage 0 --stop-stage 10   # data stages
# Data (stages 0-1): 0 GigaSpeech manifests (local/prepare_gigaspeech.sh), 1 transcripts without
# tags, and the raw text of the denominator. Method stages 10-18: local/recipes/distill_w2v2.sh.
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
# The denominator's phone LM comes from a large raw text corpus, as in the paper (sec. 4.2).
# GigaSpeech ships no text corpus besides its transcripts, so its raw text is the transcripts of
# its largest training subset, XL (10,000 h, S's superset; tags removed, stage 1), of which a
# seeded sample of --den-max-sentences lines is used. Silence is inserted at random with
# --den-sil-prob 0.2 between words and --den-sil-prob-boundary 0.8 at sentence edges (the paper's
# ref. [10], Kaldi's e2e text_to_phones.py; the paper gives no values). --den-text transcripts
# uses the labelled S transcripts instead; --den-text FILE any raw text.
den_text=             # default: $data/text/gigaspeech_text_$den_subset.txt (stage 1)
den_subset=XL
den_max_sentences=1000000
den_silence=SIL       # none: no silence
den_sil_prob=0.2
den_sil_prob_boundary=0.8
den_seed=0
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
den_raw=$data/text/gigaspeech_text_$den_subset.txt
[ -n "$den_text" ] || den_text=$den_raw
den_subsets=""  # the subset whose transcripts are the den text (when it is)
if [ "$den_text" = "$den_raw" ]; then den_subsets=$den_subset; fi
read -ra all_subsets <<< "$(echo "$pool_subset $train_subset $dev_subset $test_subsets" \
  "$den_subsets" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')"
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
  if [ -n "$den_subsets" ] \
      && stage_needed den_text "$(cuts "$den_subset")" "$den_raw" "drop-tags"; then
    log "Stage 1: the raw text of the denominator: $den_subset transcripts without tags"
    python -m speechkd.bin.cuts_to_text --cuts "$(cuts "$den_subset")" --drop-tags \
      --out "$den_raw" --log-file "$expdir/log/den_text.log"
    stage_done den_text "$(cuts "$den_subset")" "$den_raw" "drop-tags"
  fi
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
