#!/usr/bin/env bash
# Sets up .venv if needed (pinned packages + offline assets + the "mars" Jupyter kernel), then
# executes every notebook in order with papermill. See `./run_all.sh --help`.
#   ./run_all.sh                      the reference run (profile cpu, offline)
#   ./run_all.sh --profile smoke      every notebook end to end in minutes
#   ./run_all.sh --only 03 -p seeds "[0, 1, 2]" -p tau_v1 0.3
#   ./run_all.sh --profile paper --dry-run
#   ./run_all.sh --figures-only       redraw every figure from the saved tables (seconds; no notebook, no model)
#   ./run_all.sh --claims-only        rebuild results/claims.csv from the saved tables (after bench/gpu_regimes.py)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/scripts/setup_env.sh"
source "$ROOT/scripts/runtime_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m mars_lib.pipeline.runner "$@"
