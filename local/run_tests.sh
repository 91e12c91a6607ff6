#!/usr/bin/env bash
# Installs speechkd if needed (local/install.sh is idempotent) and runs the linters and test suite.
# Extra arguments go to pytest, e.g. bash local/run_tests.sh -k synth
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash local/install.sh
. ./path.sh
echo "ruff: $(ruff --version)"
ruff check speechkd tests
python -m pytest -q --durations=30 tests "$@"
