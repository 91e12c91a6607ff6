#!/usr/bin/env bash
# Kaldi-style job launcher: launch.sh [options] [JOB=1:N] LOG COMMAND [ARGS...]
# See speechkd/launch/cli.py for the options; cmd.sh builds $train_cmd/$decode_cmd/$cuda_cmd on it.
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
python=${SPEECHKD_PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3
PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} exec "$python" -m speechkd.launch.cli "$@"
