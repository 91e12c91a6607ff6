#!/usr/bin/env bash
# Prepare FLEURS manifests (released layout <code>/{train,dev,test}.tsv + audio/<split>/).
# Usage: local/prepare_fleurs.sh --corpus-dir DIR --output-dir DIR [--languages "ca_es th_th" | "ca th"] [--nj 1]
# Writes <output-dir>/fleurs_{recordings,supervisions,cuts}_<split>.jsonl.gz (python -m
# speechkd.bin.prepare_corpus fleurs --help lists the options in full).
set -euo pipefail

corpus_dir=
output_dir=data/manifests
languages=auto
nj=1
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR [--languages 'ca_es th_th' | 'ca th'] [--nj 1]"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

read -ra language_list <<< "$languages"
python -m speechkd.bin.prepare_corpus fleurs --corpus-dir "$corpus_dir" --output-dir "$output_dir" \
  --languages "${language_list[@]}" --num-jobs "$nj"
