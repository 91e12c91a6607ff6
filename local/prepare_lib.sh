# Source me in a local/prepare_<corpus>.sh after parse_options.sh: checks the required
# --corpus-dir and activates the environment when the caller has not sourced path.sh.
if [ -z "${corpus_dir:-}" ]; then
  echo "$0: --corpus-dir is required" >&2
  echo "${help_message:-}" >&2
  exit 1
fi
if [ -z "${SPEECHKD_ROOT:-}" ]; then
  . "$(dirname "$0")/../path.sh"
fi
