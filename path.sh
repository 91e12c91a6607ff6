# Source me: activates speechkd's environment. Recipes do `. ./path.sh` (a symlink to this file).
SPEECHKD_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
export SPEECHKD_ROOT
speechkd_venv=${SPEECHKD_VENV:-$SPEECHKD_ROOT/.venv}
if [ ! -x "$speechkd_venv/bin/python" ]; then
  echo "path.sh: no environment at $speechkd_venv; run: bash $SPEECHKD_ROOT/local/install.sh" >&2
  return 1 2>/dev/null || exit 1
fi
export VIRTUAL_ENV=$speechkd_venv
export PATH=$speechkd_venv/bin:$SPEECHKD_ROOT/local:$PATH
export PYTHONPATH=$SPEECHKD_ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
# Models and data are never fetched from a hub unless the user asks (export HF_HUB_OFFLINE=0).
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-$HF_HUB_OFFLINE}
export TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-$HF_HUB_OFFLINE}
export LC_ALL=C.UTF-8
