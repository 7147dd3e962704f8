"""trim_heap gives freed heap pages back to the OS (the worker calls it after checkpoints)."""

import platform
from pathlib import Path

import numpy as np
import pytest

from driftline.stream.kafka.heap import trim_heap


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_fragments_go_back_to_the_os() -> None:
    # 8 KB blocks come from the heap (below glibc's mmap threshold); keeping every tenth one alive
    # leaves holes that free() alone does not return (only the top of a heap is given back).
    blocks = [np.ones(1024) for _ in range(60_000)]  # ~470 MiB
    kept = blocks[::10]
    del blocks
    before = _rss_bytes()
    seconds = trim_heap()
    after = _rss_bytes()
    assert seconds is not None and seconds >= 0
    assert before - after > 200 * 2**20, f"RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB"
    assert all(block[0] == 1.0 for block in kept)  # what was live is untouched
