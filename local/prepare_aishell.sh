#!/usr/bin/env bash
# Prepare AISHELL-1 manifests (data_aishell/wav/<split>/<spk>/*.wav + transcript).
# Usage: local/prepare_aishell.sh --corpus-dir DIR --output-dir DIR
# Writes <output-dir>/aishell_{recordings,supervisions,cuts}_<split>.jsonl.gz (python -m
# speechkd.bin.prepare_corpus aishell --help lists the options in full).
set -euo pipefail

corpus_dir=
output_dir=data/manifests
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

python -m speechkd.bin.prepare_corpus aishell --corpus-dir "$corpus_dir" --output-dir "$output_dir"
