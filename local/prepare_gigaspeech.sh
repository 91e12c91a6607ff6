#!/usr/bin/env bash
# Prepare GigaSpeech manifests from GigaSpeech.json (pip install ijson to stream it).
# Usage: local/prepare_gigaspeech.sh --corpus-dir DIR --output-dir DIR [--subsets "XL DEV TEST"]
# Writes <output-dir>/gigaspeech_{recordings,supervisions,cuts}_<split>.jsonl.gz (python -m
# speechkd.bin.prepare_corpus gigaspeech --help lists the options in full).
set -euo pipefail

corpus_dir=
output_dir=data/manifests
subsets=auto
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR [--subsets 'XL DEV TEST']"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

read -ra subset_list <<< "$subsets"
python -m speechkd.bin.prepare_corpus gigaspeech --corpus-dir "$corpus_dir" --output-dir "$output_dir" \
  --subsets "${subset_list[@]}"
