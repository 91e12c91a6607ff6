#!/usr/bin/env bash
# Prepare CoVoST 2 manifests (transcript + translation per Common Voice clip).
# Usage: local/prepare_covost2.sh --corpus-dir DIR --output-dir DIR [--src-lang fr] [--tgt-lang en] [--splits train,dev,test] [--covost-tsv FILE] [--train-covost true] [--skip-missing false] [--nj 1]
# --corpus-dir is the Common Voice 4 locale directory of the source language (clips/,
# validated.tsv) holding covost_v2.<src>_<tgt>.tsv. Writes
# <output-dir>/covost2_{recordings,supervisions,cuts}_<src>-<tgt>_<split>.jsonl.gz
# (python -m speechkd.bin.prepare_corpus covost2 --help lists the options in full).
set -euo pipefail

corpus_dir=
output_dir=data/manifests
src_lang=fr
tgt_lang=en
splits=
covost_tsv=
train_covost=true
skip_missing=false
nj=1
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR [--src-lang fr] [--tgt-lang en] [--splits train,dev,test] [--covost-tsv FILE] [--train-covost true] [--skip-missing false] [--nj 1]"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

extra=()
[ -n "$splits" ] && extra+=(--splits "$splits")
[ -n "$covost_tsv" ] && extra+=(--covost-tsv "$covost_tsv")
[ "$train_covost" = false ] && extra+=(--no-train-covost)
[ "$skip_missing" = true ] && extra+=(--skip-missing)
python -m speechkd.bin.prepare_corpus covost2 --corpus-dir "$corpus_dir" --output-dir "$output_dir" \
  --src-lang "$src_lang" --tgt-lang "$tgt_lang" --num-jobs "$nj" "${extra[@]}"
