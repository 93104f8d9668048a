#!/usr/bin/env bash
# The project's one test command: sets up .venv if needed, then runs the test suite.
#   ./run_tests.sh            all tests (unit tests + notebook smoke tests)
#   ./run_tests.sh -m "not slow"   unit tests only (seconds)
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/scripts/setup_env.sh"
source "$ROOT/scripts/runtime_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -ra "$@"
