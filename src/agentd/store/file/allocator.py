"""Keep freed large blocks for reuse once a process works on a big queue.

A transaction on a big queue makes two copies of the whole file (the bytes written, the text kept for the next
edit) and drops the previous two. glibc's malloc serves blocks that large with fresh ``mmap`` pages and unmaps them
when they are freed, or trims them off the top of its heap, so every transaction on a 6 MB queue touched about 1,200
new pages, each a page fault (about a fifth of the transaction's CPU on the 2-core test machine). Once a process
reads a queue of :data:`BIG` bytes or more, :func:`keep_large_blocks` raises both limits (``mallopt``), so those
copies come from memory the process already has: it then keeps up to :data:`TRIM` bytes of freed memory instead of
giving it back at once.

Only glibc has ``mallopt``; elsewhere (musl, macOS) this does nothing. ``ctypes`` is imported only then: a CLI call
on a small queue never pays for it.
"""

from __future__ import annotations

BIG = 1 << 20  # bytes: a queue this large makes copies worth keeping
MMAP = 64 << 20  # bytes: blocks below this come from the heap (glibc's default: 128 KiB, adjusting up to 32 MiB)
TRIM = 128 << 20  # bytes: free memory at the top of the heap kept (glibc's default: twice the mmap threshold)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_done: bool | None = None  # None: not tried; True: set; False: not possible here


def keep_large_blocks(size: int) -> bool:
    """Raise malloc's thresholds once, when ``size`` (a queue's bytes) is at least :data:`BIG`; whether they are
    raised (now or before)."""
    global _done
    if _done is not None or size < BIG:
        return bool(_done)
    _done = False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):  # no glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # (Setting either limit turns off glibc's own adjusting of both: both are set.)
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM))
    return _done
