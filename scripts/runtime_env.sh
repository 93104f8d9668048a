# Environment for every offline run (sourced by run_all.sh and run_tests.sh).
# Offline: nothing may touch the hub (docs/design.md §4.4: without these, failed look-ups cost 25-50 s).
# A config with offline=False (the paper profile) lifts them for its notebooks (mars_lib.pipeline.runner).
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export HF_HUB_DISABLE_TELEMETRY=1
# Tokenizer threads compete with torch's on small machines.
export TOKENIZERS_PARALLELISM=false
# glibc's allocator spends much time in page faults at sequence length 256; raising the mmap and
# trim thresholds made CPU training 30-70 % faster (docs/design.md §4.4). Must be set before start.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824}"
export MPLBACKEND=Agg
# the repository root from this file's place when the caller did not set ROOT (sourced by hand, the
# cache would otherwise land in /.cache)
_MARS_ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export MARS_CACHE_DIR="${MARS_CACHE_DIR:-$_MARS_ROOT/.cache}"
