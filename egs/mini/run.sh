#!/usr/bin/env bash
# The mini recipe: a synthetic espeak-ng corpus made here, offline, then every method at toy scale.
#   ./run.sh                             # everything
#   ./run.sh --stage 0 --stop-stage 3    # data stages: corpus, validation, fbank, units
#   ./run.sh --help
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

stage=0
stop_stage=100
nj=2              # parallel jobs of data stages
scale=small       # tiny | small | full
seed=0
data=data
expdir=exp
bpe_vocab_size=500
probe_epochs=12   # intelligibility probe (stage 4)
probe_languages="en de"
force=false

help_message="Usage: $0 [options]; data in \$data, experiments in \$expdir"
. ./path.sh
. ./cmd.sh
. ./local/parse_options.sh || exit 1
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
mkdir -p "$expdir/log"

manifests=$data/manifests
fbank=$data/fbank
synth_src=$SPEECHKD_ROOT/speechkd/data/synth

corpus_splits() {  # "<corpus> <split>" for every cut manifest that stage 0 made
  local f base
  for f in "$manifests"/mini_*_cuts_*.jsonl.gz; do
    base=$(basename "$f" .jsonl.gz)
    echo "${base%%_cuts_*} ${base##*_cuts_}"
  done
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: synthetic mini corpus (scale=$scale, seed=$seed)"
  if stage_needed corpus "$synth_src" "$manifests $data/text" "scale=$scale seed=$seed"; then
    python -m speechkd.bin.make_mini_corpus --output-dir "$data" --scale "$scale" --seed "$seed" \
      --nj "$nj" 2>&1 | tee "$expdir/log/make_mini_corpus.log"
    stage_done corpus "$synth_src" "$manifests $data/text" "scale=$scale seed=$seed"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: validate manifests and audio"
  if stage_needed validate "$manifests" "$expdir/log/validate" ""; then
    mkdir -p "$expdir/log/validate"
    corpus_splits | while read -r corpus split; do
      rec=$manifests/${corpus}_recordings_${split}.jsonl.gz
      sup=$manifests/${corpus}_supervisions_${split}.jsonl.gz
      python -m speechkd.bin.validate_data --recordings "$rec" --supervisions "$sup" \
        --sampling-rate 16000 > "$expdir/log/validate/${corpus}_${split}.log" 2>&1 \
        || { log "validation of $corpus/$split failed: see $expdir/log/validate/${corpus}_${split}.log"; exit 1; }
      lhotse validate --read-data "$manifests/${corpus}_cuts_${split}.jsonl.gz" \
        >> "$expdir/log/validate/${corpus}_${split}.log" 2>&1
    done
    stage_done validate "$manifests" "$expdir/log/validate" ""
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: 80-dim fbank (kaldi-native-fbank, lilcom) with $nj jobs per split"
  if stage_needed fbank "$manifests" "$fbank" "nj-independent num_mel_bins=80"; then
    corpus_splits | while read -r corpus split; do
      $train_cmd JOB=1:$nj "$fbank/log/${corpus}_${split}.JOB.log" \
        python -m speechkd.bin.compute_features --cuts "$manifests/${corpus}_cuts_${split}.jsonl.gz" \
          --output-dir "$fbank" --prefix "$corpus" --split "$split" --feature-type fbank \
          --num-mel-bins 80 --shard JOB/$nj
      python -m speechkd.bin.compute_features --output-dir "$fbank" --prefix "$corpus" \
        --split "$split" --merge "$nj"
    done
    stage_done fbank "$manifests" "$fbank" "nj-independent num_mel_bins=80"
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: units: sentencepiece BPE ($bpe_vocab_size) and the offline Whisper tokenizer"
  lang_bpe=$data/lang_bpe_$bpe_vocab_size
  if stage_needed units "$data/text" "$lang_bpe $data/lang_whisper" "bpe=$bpe_vocab_size"; then
    texts=()
    for f in "$data"/text/mini_raw_*.txt; do texts+=(--text "$f"); done
    python -m speechkd.bin.prepare_lang --type bpe --vocab-size "$bpe_vocab_size" "${texts[@]}" \
      --out-dir "$lang_bpe"
    python -m speechkd.bin.prepare_lang --type whisper --out-dir "$data/lang_whisper"
    stage_done units "$data/text" "$lang_bpe $data/lang_whisper" "bpe=$bpe_vocab_size"
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: intelligibility probe: a CTC model trained from scratch on $probe_languages"
  probe=$expdir/intelligibility_probe
  params="epochs=$probe_epochs languages=$probe_languages seed=$seed"
  if stage_needed probe "$fbank" "$probe/probe-summary.json" "$params"; then
    lang_opts=()
    for l in $probe_languages; do lang_opts+=(--language "$l"); done
    python -m speechkd.bin.check_intelligibility --train "$fbank/mini_asr_cuts_train.jsonl.gz" \
      --test "test=$fbank/mini_asr_cuts_test.jsonl.gz" \
      --test "test_ood=$fbank/mini_asr_cuts_test_ood.jsonl.gz" \
      "${lang_opts[@]}" --epochs "$probe_epochs" --seed "$seed" --out-dir "$probe"
    stage_done probe "$fbank" "$probe/probe-summary.json" "$params"
  fi
fi

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: RESULTS.md"
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out RESULTS.md
fi
log "done"
