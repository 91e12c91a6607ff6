#!/usr/bin/env bash
# Prepare ClovaCall (Korean call-centre speech) manifests.
# Usage: local/prepare_clovacall.sh --corpus-dir DIR --output-dir DIR [--variant clean] [--splits train,test] [--audio-dir DIR] [--nj 1]
# --corpus-dir holds {train,test}_ClovaCall.json and clean/ + raw/ (or wavs_train/, wavs_test/).
# Writes <output-dir>/clovacall_{recordings,supervisions,cuts}_<split>.jsonl.gz (split: train,
# test; train_raw, test_raw for --variant raw). python -m speechkd.bin.prepare_corpus clovacall
# --help lists the options in full.
set -euo pipefail

corpus_dir=
output_dir=data/manifests
variant=clean
splits=
audio_dir=
nj=1
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR [--variant clean|raw] [--splits train,test] [--audio-dir DIR] [--nj 1]"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

extra=()
[ -n "$splits" ] && extra+=(--splits "$splits")
[ -n "$audio_dir" ] && extra+=(--audio-dir "$audio_dir")
python -m speechkd.bin.prepare_corpus clovacall --corpus-dir "$corpus_dir" --output-dir "$output_dir" \
  --variant "$variant" --num-jobs "$nj" "${extra[@]}"
