# Source me in a recipe (after path.sh): log() and fingerprinted stage skipping.
#
#   if stage_needed data "$inputs" "$outputs" "$params"; then
#     ...commands...
#     stage_done data "$inputs" "$outputs" "$params"
#   fi
# inputs/outputs are space-separated paths (files or directories); params is any string that
# captures the stage's configuration (options, config file contents). A stage is skipped only while
# all three are unchanged; deleting or editing an output, an input or an option re-runs it.
# Stamps live in ${stamp_dir:-exp/.stages}/<name>.json. Set force=true to run regardless.
#
#   RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")
# (at the top of a run.sh, before parse_options.sh consumes "$@") is the command line that re-runs
# the recipe with the same options, quoted for the shell; run.sh appends it to commands.log.

record_command() {  # record_command WORD...: one line that the shell reads back as the WORDs
  local word quoted line=
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      quoted=$word
    elif [[ $word =~ [^[:print:]] ]]; then
      printf -v quoted '%q' "$word"  # newlines, tabs: $'...'
    else
      quoted="'${word//\'/\'\\\'\'}'"
    fi
    line+="${line:+ }$quoted"
  done
  printf '%s\n' "$line"
}

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]:-main}) $*" >&2
}

_stage_fp() {
  local action=$1 name=$2 inputs=$3 outputs=$4 params=$5
  # shellcheck disable=SC2086
  python -m speechkd.bin.stage_fingerprint "$action" --stamp "${stamp_dir:-exp/.stages}/$name.json" \
    --inputs $inputs --outputs $outputs --params "$params"
}

stage_needed() {
  local reason
  if [ "${force:-false}" = true ]; then
    log "stage '$1': running (force=true)"
    return 0
  fi
  if reason=$(_stage_fp check "$@"); then
    log "stage '$1': skipped ($reason)"
    return 1
  fi
  log "stage '$1': running ($reason)"
  return 0
}

stage_done() {
  _stage_fp record "$@" || { log "stage '$1': could not record its fingerprint"; return 1; }
}

window_whisper() {  # window_whisper <model dir> <out dir> <seconds>: a copy with a shorter encoder
  # input (positional embeddings sliced, the window stored in its config.json); fingerprinted
  local src=$1 out=$2 seconds=$3
  if stage_needed "window_${out##*/}" "$src" "$out" "window=$seconds"; then
    python -m speechkd.bin.fetch_whisper --model "$src" --out-dir "$out" --encoder-window "$seconds"
    stage_done "window_${out##*/}" "$src" "$out" "window=$seconds"
  fi
}

tensorboard_importable() {  # true when fairseq can write TensorBoard logs (tensorboard or
  # tensorboardX installed; looked up once per shell). A fairseq training run then gets
  #   tb=(); tensorboard_importable && tb=(--tensorboard-logdir "$dir/tensorboard")
  # (hydra: common.tensorboard_logdir="$dir/tensorboard")
  if [ -z "${_tensorboard_importable:-}" ]; then
    if python -c 'import importlib.util as u, sys
sys.exit(not (u.find_spec("tensorboard") or u.find_spec("tensorboardX")))' 2>/dev/null; then
      _tensorboard_importable=true
    else
      _tensorboard_importable=false
    fi
  fi
  [ "$_tensorboard_importable" = true ]
}
