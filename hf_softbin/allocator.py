"""Freed memory kept in the process for the next step of a loop (Linux with glibc).

A training or scoring step allocates tensors of tokens x vocabulary: 39 MB for 700 tokens and 13,778 words. glibc
serves every allocation above 32 MB with a fresh mmap and unmaps it when freed, so the kernel zero-fills each of its
4 KB pages again in the next step. On wt2-mini's ensemble-taught recipe those page faults took two fifths of a
training process's CPU time.
"""

import ctypes
import ctypes.util

# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def reuse_freed_memory() -> bool:
    """Serve large allocations from the heap and keep its free top (up to 2 GB) for reuse instead of returning it to
    the system. Returns whether the C library took the setting (False where it has no mallopt, e.g. macOS)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
