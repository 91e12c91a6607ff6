#!/usr/bin/env bash
# DistillW2V2 (two-step wav2vec 2.0 distillation, T1 -> S5 SN -> S5 SS) on LibriSpeech: the
# unlabelled pool is LibriSpeech audio without its transcripts (--pool-parts; the paper used
# Libri-Light LV-60k: give its prepared cut manifests with --pool-cuts), the labelled set
# train-clean-100, the test sets {dev,test}-{clean,other}; phones from a G2P lexicon, a 4-gram
# phone LM denominator from LibriSpeech's LM corpus (librispeech-lm-norm.txt, OpenSLR 11) with
# random silence, word 4-gram LM decoding (paper Table 5).
#   ./run.sh --corpus-dir /data/LibriSpeech --teacher-pretrained /models/wav2vec_vox_new.pt \
#     --trust-fairseq-checkpoint true --ngpu 8                   # teacher = wav2vec2-large LV-60k
#   ./run.sh --corpus-dir /data/LibriSpeech --stage 0 --stop-stage 10   # data stages
# Data (stages 0-1): 0 LibriSpeech manifests (local/prepare_librispeech.sh), 1 nothing more
# (LibriSpeech is already normalised). Method stages 10-18: local/recipes/distill_w2v2.sh.
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=16
corpus_dir=           # LibriSpeech/ with its parts
pool_parts="train-clean-360 train-other-500"  # unlabelled pool (with train-clean-100's audio)
pool_cuts=            # extra prepared pool manifests (e.g. Libri-Light), space separated
train_part=train-clean-100
dev_part=dev-clean
test_parts="dev-clean dev-other test-clean test-other"
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
lm_text=              # default: the train-clean-100 transcripts (e.g. librispeech-lm-norm.txt)
# The denominator's phone LM comes from a large raw text corpus, as in the paper (sec. 4.2):
# LibriSpeech's LM corpus (OpenSLR 11: librispeech-lm-norm.txt, or the .txt.gz as downloaded;
# about 40M sentences of which a seeded sample of --den-max-sentences is used). Silence is
# inserted at random with --den-sil-prob 0.2 between words and --den-sil-prob-boundary 0.8 at
# sentence edges (the paper's ref. [10], Kaldi's e2e text_to_phones.py; the paper gives no
# values). --den-text transcripts uses the train-clean-100 transcripts instead.
den_text=             # default: $corpus_dir/librispeech-lm-norm.txt
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
read -ra all_parts <<< "$(echo "$pool_parts $train_part $dev_part $test_parts" | tr ' ' '\n' \
  | awk 'NF && !seen[$0]++' | tr '\n' ' ')"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: LibriSpeech manifests of ${all_parts[*]}"
  [ -n "$corpus_dir" ] || { log "give --corpus-dir"; exit 1; }
  outputs=""
  for part in "${all_parts[@]}"; do outputs+="$manifests/librispeech_cuts_$part.jsonl.gz "; done
  if stage_needed prepare_librispeech "$corpus_dir" "$outputs" "${all_parts[*]}"; then
    local/prepare_librispeech.sh --corpus-dir "$corpus_dir" --output-dir "$manifests" \
      --parts "${all_parts[*]}" --nj "$nj" 2>&1 | tee "$expdir/log/prepare_librispeech.log"
    stage_done prepare_librispeech "$corpus_dir" "$outputs" "${all_parts[*]}"
  fi
fi

# the variables of the shared method stages
cuts() { echo "$manifests/librispeech_cuts_$1.jsonl.gz"; }
for part in $pool_parts $train_part; do pool_cuts="$pool_cuts $(cuts "$part")"; done
train_cuts=$(cuts "$train_part")
dev_cuts=$(cuts "$dev_part")
test_sets=""
for part in $test_parts; do test_sets="$test_sets $part=$(cuts "$part")"; done
lexicon=$data/lang_phone/lexicon.txt
den_graph=$data/lang_den/den.fst.txt
[ -n "$den_text" ] || den_text=$corpus_dir/librispeech-lm-norm.txt
method_exp=$expdir/distill_w2v2
[ -n "$lm_text" ] || unset lm_text

. ./local/recipes/distill_w2v2.sh

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "DistillW2V2, LibriSpeech" --commands-file "$expdir/commands.log" \
    --section "$method_exp/report.md"
fi
log "done"
