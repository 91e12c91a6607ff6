#!/usr/bin/env bash
# Prepare CSRC-2021 (SLT 2021 children speech recognition challenge) manifests, one split per set.
# Usage: local/prepare_csrc.sh --corpus-dir DIR --output-dir DIR [--sets A,C1,C2] [--set-info dev:read:child] [--transcript-list FILE] [--audio-ext wav] [--nj 1]
# --corpus-dir holds one directory per set (A or A<n>: adult read, C1: child read, C2: child
# conversational; others need --set-info NAME:style:age_group). Writes
# <output-dir>/csrc_{recordings,supervisions,cuts}_<set in lower case>.jsonl.gz
# (python -m speechkd.bin.prepare_corpus csrc --help lists the options in full).
set -euo pipefail

corpus_dir=
output_dir=data/manifests
sets=
set_info=
transcript_list=
audio_ext=wav
nj=1
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR [--sets A,C1,C2] [--set-info dev:read:child] [--transcript-list FILE] [--audio-ext wav] [--nj 1]"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

extra=()
[ -n "$sets" ] && extra+=(--sets "$sets")
[ -n "$set_info" ] && extra+=(--set-info "$set_info")
[ -n "$transcript_list" ] && extra+=(--transcript-list "$transcript_list")
python -m speechkd.bin.prepare_corpus csrc --corpus-dir "$corpus_dir" --output-dir "$output_dir" \
  --audio-ext "$audio_ext" --num-jobs "$nj" "${extra[@]}"
