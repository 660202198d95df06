"""How much memory the process holds, how much the machine has, and giving memory back.

Read from ``/proc`` and ``/sys/fs/cgroup`` directly: a few small reads once per check
interval, and no dependency (psutil) for what three files say.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

STATM = Path("/proc/self/statm")
MEMINFO = Path("/proc/meminfo")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def read_statm_rss() -> int:
    """The process's resident set size in bytes, now (``/proc/self/statm``, field 2, in pages)."""
    fd = os.open(STATM, os.O_RDONLY)
    try:
        fields = os.read(fd, 256).split()
    finally:
        os.close(fd)
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def read_peak_rss() -> int:
    """The *peak* resident set size in bytes (``getrusage``): it never goes down, so a
    limiter using it stops refusing only after a restart. For systems without ``/proc``."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB elsewhere


def rss_reader() -> tuple[Callable[[], int], bool]:
    """The best RSS reader here, and whether it reads the current (not the peak) RSS."""
    if STATM.exists():
        return read_statm_rss, True
    return read_peak_rss, False


def total_memory() -> int | None:
    """Bytes of memory this process may use in all: the machine's ``MemTotal``, or the
    cgroup's limit when one is set and lower (as the Collector does in a container).
    None when neither can be read."""
    limits = [limit for limit in (_mem_total(), *(_read_number(p) for p in _cgroup_limit_files())) if limit]
    return min(limits) if limits else None


def _mem_total() -> int | None:
    try:
        for line in MEMINFO.read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_limit_files() -> Iterator[Path]:
    """cgroup v2 ``memory.max`` of the namespace root, of our cgroup and its ancestors (a
    limit anywhere above binds too), and cgroup v1's ``memory.limit_in_bytes``."""
    yield CGROUP_ROOT / "memory.max"
    yield CGROUP_ROOT / "memory" / "memory.limit_in_bytes"
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), 0, -1):
            own = "/".join(parts[:depth])
            if hierarchy == "0" and not controllers:
                yield CGROUP_ROOT / own / "memory.max"
            elif "memory" in controllers.split(","):
                yield CGROUP_ROOT / "memory" / own / "memory.limit_in_bytes"


def _read_number(path: Path) -> int | None:
    """The file's content if it is a number (``max`` means no limit)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _malloc_trim() -> Callable[[], object] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc; musl and macOS have none
    except (AttributeError, OSError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_TRIM = _malloc_trim()


def collect_garbage() -> None:
    """Free what can be freed and give it back to the system.

    ``gc.collect()`` frees only garbage in reference cycles (the rest was freed when its
    last reference went), and freed memory mostly stays in the allocator, still resident.
    glibc's ``malloc_trim(0)`` returns free heap pages to the kernel, so RSS — what the
    limiter measures — drops for memory that is truly free.
    """
    gc.collect()
    if _TRIM is not None:
        _TRIM()
