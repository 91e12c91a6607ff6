# Source me after setting a script's option defaults (Kaldi convention, own implementation):
#   stage=0
#   stop_stage=100
#   . local/parse_options.sh || exit 1
# --name value    sets the variable name (dashes become underscores: --stop-stage sets stop_stage);
#                 only variables assigned at the top level of the calling script before this file
#                 is sourced are options; anything else is an error listing the valid options.
# --name=value    the same.
# --config FILE   sources FILE (lines "name=value") before the remaining options are applied.
# --help          prints the options with their current values (and $help_message if set).
# Positional arguments stay in "$@" after the options.

_po_script=${BASH_SOURCE[1]:-$0}
_po_valid=()
if [ ! -f "$_po_script" ]; then
  # the caller changed directory before sourcing this file: its options cannot be read
  echo "parse_options.sh: cannot read the calling script $_po_script from $PWD;" \
    "source parse_options.sh before any cd" >&2
  exit 1
fi
# Top-level assignments before the line that sources this file.
while IFS= read -r _po_line; do
  case "$_po_line" in
    *parse_options.sh*) break ;;
  esac
  if [[ "$_po_line" =~ ^([a-z_][a-z0-9_]*)= ]] && [ "${BASH_REMATCH[1]}" != help_message ]; then
    _po_valid+=("${BASH_REMATCH[1]}")
  fi
done < "$_po_script"

_po_is_valid() {
  local v
  for v in "${_po_valid[@]}"; do [ "$v" = "$1" ] && return 0; done
  return 1
}

_po_usage() {
  local v
  [ -n "${help_message:-}" ] && echo "$help_message"
  echo "Options (current values):"
  for v in "${_po_valid[@]}"; do
    printf '  --%s %s\n' "${v//_/-}" "${!v}"
  done
  echo "  --config FILE (name=value lines)"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      _po_usage
      exit 0 ;;
    --*=*)
      _po_opt=${1%%=*}; _po_val=${1#*=}; shift ;;
    --*)
      _po_opt=$1
      if [ $# -lt 2 ]; then
        echo "$0: option $_po_opt needs a value" >&2
        exit 1
      fi
      _po_val=$2; shift 2 ;;
    *)
      break ;;
  esac
  _po_name=${_po_opt#--}
  _po_name=${_po_name//-/_}
  if [ "$_po_name" = config ]; then
    if [ ! -f "$_po_val" ]; then
      echo "$0: config file $_po_val not found" >&2
      exit 1
    fi
    # shellcheck disable=SC1090
    . "$_po_val" || { echo "$0: error in config file $_po_val" >&2; exit 1; }
    continue
  fi
  if ! _po_is_valid "$_po_name"; then
    echo "$0: unknown option $_po_opt" >&2
    printf '%s: valid options:' "$0" >&2
    for _po_v in "${_po_valid[@]}"; do printf ' --%s' "${_po_v//_/-}" >&2; done
    printf ' --config\n' >&2
    exit 1
  fi
  # Boolean options keep Kaldi's true/false spelling.
  if [ "${!_po_name}" = true ] || [ "${!_po_name}" = false ]; then
    if [ "$_po_val" != true ] && [ "$_po_val" != false ]; then
      echo "$0: option $_po_opt takes true or false, not '$_po_val'" >&2
      exit 1
    fi
  fi
  printf -v "$_po_name" '%s' "$_po_val"
done
unset _po_script _po_line _po_opt _po_val _po_name _po_v
true
