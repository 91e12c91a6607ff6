#!/usr/bin/env bash
# Installs speechkd if needed (local/install.sh is idempotent) and runs the linters and test suite.
# Extra arguments go to pytest, e.g. bash local/run_tests.sh -k synth
# The tests run on every core (pytest-xdist; SPEECHKD_TEST_WORKERS=1 for one process); a session
# fixture (the tiny mini run of the recipe tests) is built once in each worker that needs it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash local/install.sh
. ./path.sh
echo "ruff: $(ruff --version)"
ruff check speechkd tests
python -m pytest -q -n "${SPEECHKD_TEST_WORKERS:-auto}" --dist load --durations=30 tests "$@"
