#!/usr/bin/env bash
# Prepare Common Voice 13.0 manifests, train/dev down-sampled by up-votes as in DistilWhisper.
# Usage: local/prepare_commonvoice.sh --corpus-dir DIR --output-dir DIR [--languages "ca th"] [--train-utts 10000] [--dev-utts 1000] [--nj 1]
# Writes <output-dir>/commonvoice_{recordings,supervisions,cuts}_<split>.jsonl.gz (python -m
# speechkd.bin.prepare_corpus commonvoice --help lists the options in full).
set -euo pipefail

corpus_dir=
output_dir=data/manifests
languages=auto
train_utts=10000
dev_utts=1000
nj=1
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR [--languages 'ca th'] [--train-utts 10000] [--dev-utts 1000] [--nj 1]"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

read -ra language_list <<< "$languages"
python -m speechkd.bin.prepare_corpus commonvoice --corpus-dir "$corpus_dir" --output-dir "$output_dir" \
  --languages "${language_list[@]}" --train-utts "$train_utts" --dev-utts "$dev_utts" --num-jobs "$nj"
