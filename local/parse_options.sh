# Source me after setting a script's option defaults (Kaldi convention, own implementation):
#   stage=0           # first stage to run
#   stop_stage=100    # last stage to run
#   . local/parse_options.sh || exit 1
# --name value    sets the variable name (dashes become underscores: --stop-stage sets stop_stage);
#                 only variables assigned at the top level of the calling script before this file
#                 is sourced are options; anything else is an error listing the valid options.
#                 A value with spaces is one quoted word: --train-opts "--epochs 2 --lr 1e-3".
# --name=value    the same.
# --config FILE   sources FILE (lines "name=value") before the remaining options are applied.
# --help          prints $help_message (if set), every option with its current value and its
#                 comment, and the script's stages (below).
# Checked: a word that is not an option (a positional argument, or the rest of an unquoted value)
# is an error naming it; --stage, --stop-stage, --nj and --ngpu take integers; an option whose
# default is true or false takes true or false.
#
# Option comments: the "# ..." after the default on an option's line, continued by lines holding
# only an indented comment right below it:
#   nj=4            # parallel jobs of the data stages
#   covost_dir=     # Common Voice 4 English locale dir holding
#                   # covost_v2.en_de.tsv
# Stage list (--help): every code line (not a comment) of the script that announces a stage with
#   log "Stage N: what it does"
# in file order: the text up to the line's last quote, joined with the quoted string of the next
# line when the line ends in a backslash. Where a code line names local/recipes/<method>.sh (the
# shared method stages it sources), that file's announcements are listed at that point.

_po_script=${BASH_SOURCE[1]:-$0}
_po_dir=$(dirname "${BASH_SOURCE[0]}")
_po_valid=()
_po_comments=()
if [ ! -f "$_po_script" ]; then
  # the caller changed directory before sourcing this file: its options cannot be read
  echo "parse_options.sh: cannot read the calling script $_po_script from $PWD;" \
    "source parse_options.sh before any cd" >&2
  exit 1
fi
# Top-level assignments before the line that sources this file, with their comments.
_po_assign='^([a-z_][a-z0-9_]*)='
# name=VALUE (a quoted string or one word), blanks, then the comment
_po_commented='^[a-z0-9_]+=("[^"]*"|'"'[^']*'"'|[^[:space:]]*)[[:space:]]+#[[:space:]]*(.*)$'
_po_more='^[[:space:]]+#[[:space:]]*(.*)$'
_po_last=
while IFS= read -r _po_line; do
  case "$_po_line" in
    *parse_options.sh*) break ;;
  esac
  if [[ "$_po_line" =~ $_po_assign ]] && [ "${BASH_REMATCH[1]}" != help_message ]; then
    _po_valid+=("${BASH_REMATCH[1]}")
    _po_last=$(( ${#_po_valid[@]} - 1 ))
    _po_comments[_po_last]=
    if [[ "$_po_line" =~ $_po_commented ]]; then
      _po_comments[_po_last]=${BASH_REMATCH[2]}
    fi
  elif [ -n "$_po_last" ] && [[ "$_po_line" =~ $_po_more ]]; then
    _po_comments[_po_last]+=" ${BASH_REMATCH[1]}"
  else
    _po_last=
  fi
done < "$_po_script"

_po_is_valid() {
  local v
  for v in "${_po_valid[@]}"; do [ "$v" = "$1" ] && return 0; done
  return 1
}

_po_stages() {  # _po_stages FILE: the stage announcements of FILE and of the recipes it sources
  local file=$1 line text recipe open=false
  while IFS= read -r line || [ -n "$line" ]; do
    if [ "$open" = true ]; then  # the continuation line of a split announcement
      [[ "$line" =~ ^[[:space:]]*\"(.*)\" ]] && text+=" ${BASH_REMATCH[1]}"
      printf '  %s\n' "$text"
      open=false
      continue
    fi
    [[ "$line" =~ ^[[:space:]]*# ]] && continue
    # the text runs to the last quote of the line (quotes nest inside $(...))
    if [[ "$line" =~ log\ \"(Stage\ [0-9]+:.*)\"(.*)$ ]]; then
      text=${BASH_REMATCH[1]}
      if [[ "${BASH_REMATCH[2]}" =~ \\[[:space:]]*$ ]]; then
        open=true
      else
        printf '  %s\n' "$text"
      fi
    elif [[ "$line" =~ local/recipes/([A-Za-z0-9_]+\.sh) ]]; then
      recipe=${BASH_REMATCH[1]}
      case " $_po_seen " in *" $recipe "*) continue ;; esac
      _po_seen+=" $recipe"
      [ -f "$_po_dir/recipes/$recipe" ] && _po_stages "$_po_dir/recipes/$recipe"
    fi
  done < "$file"
  [ "$open" = true ] && printf '  %s\n' "$text"
  return 0
}

_po_usage() {
  local i v line width=0
  [ -n "${help_message:-}" ] && echo "$help_message"
  echo "Options (current values):"
  for v in "${_po_valid[@]}"; do
    line="--${v//_/-}${!v:+ ${!v}}"
    if [ ${#line} -gt $width ] && [ ${#line} -le 40 ]; then width=${#line}; fi
  done
  for i in "${!_po_valid[@]}"; do
    v=${_po_valid[i]}
    line="--${v//_/-}${!v:+ ${!v}}"
    if [ -n "${_po_comments[i]}" ]; then
      printf "  %-${width}s  # %s\n" "$line" "${_po_comments[i]}"
    else
      printf '  %s\n' "$line"
    fi
  done
  printf "  %-${width}s  # %s\n" "--config FILE" "name=value lines, applied before later options"
  _po_seen=
  line=$(_po_stages "$_po_script")
  if [ -n "$line" ]; then
    echo "Stages (run those from --stage to --stop-stage):"
    echo "$line"
  fi
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
  _po_prev=$_po_opt _po_prev_val=$_po_val
done

if [ $# -gt 0 ]; then
  printf '%s: unexpected argument(s):' "$0" >&2
  printf " '%s'" "$@" >&2
  printf '; %s takes only --name value options' "$0" >&2
  if [ -n "${_po_prev:-}" ]; then
    printf " (%s got only '%s': quote a value with spaces, e.g. %s \"%s %s ...\")" \
      "$_po_prev" "$_po_prev_val" "$_po_prev" "$_po_prev_val" "$1" >&2
  fi
  printf '\n' >&2
  exit 1
fi

# Integer options: stages, job and GPU counts.
for _po_v in stage stop_stage nj ngpu; do
  _po_is_valid "$_po_v" || continue
  case $_po_v in
    stage|stop_stage) _po_re='^-?[0-9]+$'; _po_what='an integer' ;;
    nj) _po_re='^[1-9][0-9]*$'; _po_what='a positive integer' ;;
    *) _po_re='^[0-9]+$'; _po_what='a non-negative integer' ;;
  esac
  if ! [[ ${!_po_v} =~ $_po_re ]]; then
    echo "$0: option --${_po_v//_/-} takes $_po_what, not '${!_po_v}'" >&2
    exit 1
  fi
done
unset _po_script _po_dir _po_line _po_last _po_opt _po_val _po_name _po_v _po_prev _po_prev_val
unset _po_re _po_what _po_seen _po_comments _po_assign _po_commented _po_more
true
