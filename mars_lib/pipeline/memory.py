"""Give freed heap memory back to the operating system after a memory-heavy stage.

`scripts/runtime_env.sh` sets glibc's mmap and trim thresholds to 1 GB: large tensors then come from
the heap instead of fresh mmaps, which saves the page faults that made encoding and generation 30-70 %
slower (docs/design.md §4.4). The price is that freed memory stays in the process: after a stage that
encoded or generated in batches, up to ~1 GB per allocator arena is free but still resident, and the
next stage's own peak is added on top. `release_memory()` at the end of such a stage (encoding,
generation, judging, each DPO policy) returns it: one `malloc_trim`, a few milliseconds, after the
stage's inner loop, so the loop keeps its fast path."""
from __future__ import annotations

import ctypes
import gc


def release_memory(collect: bool = False) -> None:
    """`malloc_trim(0)`: return every free heap page to the OS (glibc; elsewhere a no-op). With
    collect=True first collect cyclic garbage (peft-wrapped models hold reference cycles)."""
    if collect:
        gc.collect()
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL("libc.so.6")
    return _LIBC
