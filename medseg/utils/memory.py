"""Optional allocator tuning for CPU training (call once at entry-point start).

On glibc, blocks above the mmap threshold are obtained with ``mmap`` and returned to the kernel on ``free``; every
large activation of every iteration is then mapped and page-faulted afresh, which costs about as much time as the
convolutions themselves on a small CPU. :func:`keep_freed_memory` disables mmap-based allocation and raises the trim
threshold (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, large)``), so freed memory stays in the process and
is reused by the next iteration. The same can be done without code with the environment variables
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<bytes>`` set before the process starts.

It is a no-op (returning False) where glibc's ``mallopt`` is unavailable (macOS, Windows, musl). Processes that
compute on a GPU leave the allocator alone (:func:`tune_allocator`): their host memory holds the data pipeline, not
activations, and keeping every freed block would only grow them and the DataLoader workers forked from them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

# glibc <malloc.h> parameter numbers
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

DEFAULT_TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed memory at the top of the heap


def _libc_mallopt() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def keep_freed_memory(trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Keep freed heap memory in the process (glibc only); returns True if the settings were applied.

    Args:
        trim_threshold: bytes of free memory at the top of the heap kept before trimming (max 2**31 - 1).
    """
    mallopt = _libc_mallopt()
    if mallopt is None:
        logger.debug("mallopt unavailable on this platform; allocator left unchanged")
        return False
    trim_threshold = int(min(max(trim_threshold, 0), 2**31 - 1))
    ok = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    if ok:
        logger.debug("glibc allocator: mmap disabled, trim threshold %d bytes", trim_threshold)
    else:
        logger.warning("mallopt refused the allocator settings; allocator left as is")
    return ok


def tune_allocator(device: object) -> bool:
    """:func:`keep_freed_memory` if the process computes on the CPU (``device``: a :class:`torch.device` or its
    name), else nothing; returns whether the settings were applied."""
    import torch

    if torch.device(device).type != "cpu":  # type: ignore[arg-type]
        logger.debug("device %s: allocator left unchanged", device)
        return False
    return keep_freed_memory()
