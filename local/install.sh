#!/usr/bin/env bash
# Installs everything speechkd needs into ./.venv (Debian packages + pinned Python packages).
# Idempotent: a second run checks a fingerprint of requirements.txt and this script and returns
# in about a second when nothing changed. Usage: bash local/install.sh [--force]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SPEECHKD_VENV:-$root/.venv}
python=${PYTHON:-python3}
force=false
[ "${1:-}" = "--force" ] && force=true

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') [install] $*" >&2; }

# 1. Debian packages (espeak-ng and sox synthesise the mini corpus).
need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  log "installing Debian packages: ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# 2. Python packages, pinned in requirements.txt.
stamp=$venv/.speechkd-install
fingerprint=$(cat "$root/requirements.txt" "$root/local/install.sh" | sha256sum | cut -d' ' -f1)
if ! $force && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
  log "environment up to date ($venv)"
  exit 0
fi
[ -x "$venv/bin/python" ] || { log "creating venv $venv"; "$python" -m venv "$venv"; }
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
export PIP_NO_WARN_SCRIPT_LOCATION=1
# pip install, without the warnings about missing --find-links folders some machines configure
pip_install() { "${pip[@]}" "$@" 2> >(grep -v '^WARNING: Location' >&2); }
pip_install --upgrade "pip==24.3.1"

reqs=$(mktemp); trap 'rm -f "$reqs"' EXIT
grep -v '# no-deps' "$root/requirements.txt" | sed 's/#.*//' | grep -v '^\s*$' > "$reqs"
# torch first, alone, so that no other package can pull a different build of it. A user who
# installed a CUDA build of the same version keeps it (pip sees the requirement satisfied).
torch_pin=$(grep -E '^torch==' "$reqs")
log "installing $torch_pin"
pip_install "$torch_pin"
build_pins=$(grep -E '^(numpy|cython|setuptools|wheel)==' "$reqs" | tr '\n' ' ')
log "installing build requirements: $build_pins"
# shellcheck disable=SC2086
pip_install $build_pins
log "installing the pinned Python packages"
pip_install -r "$reqs"
for pin in $(grep '# no-deps' "$root/requirements.txt" | sed 's/#.*//'); do
  log "installing $pin (no deps, no build isolation; fairseq compiles for ~4 min)"
  pip_install --no-deps --no-build-isolation "$pin"
done
# torchaudio is never installed: its wheel breaks `import transformers`/`peft` with this torch.
if "$venv/bin/python" -c "import torchaudio" >/dev/null 2>&1; then
  log "removing torchaudio (ABI-incompatible with the pinned torch)"
  "$venv/bin/python" -m pip uninstall -y -q torchaudio
fi
pip_install --no-deps -e "$root"
"$venv/bin/python" - <<'PY'
import fairseq, lhotse, peft, torch, transformers, whisper  # noqa: F401
print("torch", torch.__version__, "lhotse", lhotse.__version__, "transformers", transformers.__version__)
PY
echo "$fingerprint" > "$stamp"
log "done: . path.sh activates $venv"
