#!/usr/bin/env bash
# Prepare Europarl-ST v1.1 manifests (transcript + translation per segment).
# Usage: local/prepare_europarl_st.sh --corpus-dir DIR --output-dir DIR [--src-lang en] [--tgt-lang de] [--splits train,dev,test] [--audio-ext m4a] [--audio-dir DIR] [--convert-to DIR] [--nj 1]
# --corpus-dir holds <src>/audios/*.m4a and <src>/<tgt>/<split>/segments.{lst,<src>,<tgt>}.
# The released .m4a audio is decoded by the ffmpeg program (Debian: apt-get install ffmpeg).
# --convert-to DIR converts <src>/audios/*.m4a once to 16 kHz mono DIR/*.flac (existing files
# are kept) and prepares the manifests on the flac files: much faster to read in training.
# Writes <output-dir>/europarl_st_{recordings,supervisions,cuts}_<src>-<tgt>_<split>.jsonl.gz
# (python -m speechkd.bin.prepare_corpus europarl_st --help lists the options in full).
set -euo pipefail

corpus_dir=
output_dir=data/manifests
src_lang=en
tgt_lang=de
splits=
audio_ext=m4a
audio_dir=
convert_to=
nj=1
help_message="Usage: $0 --corpus-dir DIR --output-dir DIR [--src-lang en] [--tgt-lang de] [--splits train,dev,test] [--audio-ext m4a] [--audio-dir DIR] [--convert-to DIR] [--nj 1]"
. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/prepare_lib.sh"

if [ -n "$convert_to" ]; then
  if ! command -v ffmpeg > /dev/null; then
    echo "$0: --convert-to needs ffmpeg (Debian: apt-get install ffmpeg)" >&2
    exit 1
  fi
  src_audio=$corpus_dir/$src_lang/audios
  [ -d "$src_audio" ] || src_audio=$corpus_dir/v1.1/$src_lang/audios
  mkdir -p "$convert_to"
  n=0
  for m4a in "$src_audio"/*."$audio_ext"; do
    flac=$convert_to/$(basename "$m4a" ."$audio_ext").flac
    if [ ! -s "$flac" ]; then
      tmp=$(dirname "$flac")/.tmp-$$-$(basename "$flac")
      ffmpeg -nostdin -loglevel error -y -i "$m4a" -ac 1 -ar 16000 "$tmp"
      mv "$tmp" "$flac"
      n=$((n + 1))
    fi
  done
  echo "$0: converted $n file(s) to $convert_to" >&2
  audio_dir=$convert_to
  audio_ext=flac
fi

extra=()
[ -n "$splits" ] && extra+=(--splits "$splits")
[ -n "$audio_dir" ] && extra+=(--audio-dir "$audio_dir")
python -m speechkd.bin.prepare_corpus europarl_st --corpus-dir "$corpus_dir" --output-dir "$output_dir" \
  --src-lang "$src_lang" --tgt-lang "$tgt_lang" --audio-ext "$audio_ext" --num-jobs "$nj" "${extra[@]}"
