#!/usr/bin/env bash
# Prepare LibriSpeech manifests (one split per part present, or --parts).
# Usage: local/prepare_librispeech.sh --corpus-dir DIR --output-dir DIR [--parts "train-clean-100 dev-clean"] [--nj 1]
# Writes <output-dir>/librispeech_{recordings,supervisions,cuts}_<split>.jsonl.gz (python -m
# speechkd.bin.prepare_corpus librispeech --help lists the options in full).
set -euo pipefail

corpus_dir=
output_dir=data/manifests
parts=auto
nj=1
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR [--parts 'train-clean-100 dev-clean'] [--nj 1]"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

read -ra part_list <<< "$parts"
python -m speechkd.bin.prepare_corpus librispeech --corpus-dir "$corpus_dir" --output-dir "$output_dir" \
  --parts "${part_list[@]}" --num-jobs "$nj"
