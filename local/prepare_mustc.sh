#!/usr/bin/env bash
# Prepare MuST-C en-X manifests with the English transcript and the translation of each segment.
# Usage: local/prepare_mustc.sh --corpus-dir DIR --output-dir DIR [--tgt-lang de] [--splits train,dev,tst-COMMON,tst-HE] [--nj 1] [--skip-empty false]
# --corpus-dir holds en-<tgt>/data/<split>/{wav,txt}. Writes
# <output-dir>/mustc_{recordings,supervisions,cuts}_en-<tgt>_<split>.jsonl.gz
# (python -m speechkd.bin.prepare_corpus mustc --help lists the options in full).
set -euo pipefail

corpus_dir=
output_dir=data/manifests
tgt_lang=de
splits=
nj=1
skip_empty=false
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR [--tgt-lang de] [--splits train,dev] [--nj 1] [--skip-empty false]"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

extra=()
[ -n "$splits" ] && extra+=(--splits "$splits")
[ "$skip_empty" = true ] && extra+=(--skip-empty)
python -m speechkd.bin.prepare_corpus mustc --corpus-dir "$corpus_dir" --output-dir "$output_dir" \
  --tgt-lang "$tgt_lang" --num-jobs "$nj" "${extra[@]}"
