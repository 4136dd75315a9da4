"""Peak RSS of a child process and its descendants, read from ``/proc`` while they run (Linux).

``wait4``'s ``ru_maxrss`` cannot be used for this: on Linux a child's maximum RSS starts at its parent's high-water
mark (``exec`` records the image it shared with the parent after ``vfork``), so a build launched from a large process
— pytest after the suite has loaded models, or a benchmark after a plain encode — reports the parent's memory. Each
process's ``VmHWM`` (the high-water mark of its own address space, after ``exec``) is polled instead; it only grows,
so the last reading before a process exits is its peak but for what it adds in its final poll interval.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

POLL_SECONDS = 0.05


def run_with_peak_rss(command: list[str], *, timeout: float, **popen) -> tuple[int, float]:
    """Run ``command``; return its exit code and the largest ``VmHWM`` (MB) of it or any descendant."""
    child = subprocess.Popen(command, **popen)
    peaks: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while child.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{command[:4]} ran past {timeout} s")
            for pid in [child.pid, *descendants(child.pid)]:
                if (kb := vm_hwm_kb(pid)) is not None:
                    peaks[pid] = max(peaks.get(pid, 0), kb)
            time.sleep(POLL_SECONDS)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, max(peaks.values(), default=0) / 1024


def vm_hwm_kb(pid: int) -> int | None:
    """A running process's peak resident set (kB), or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return int(line.split()[1]) if line else None  # a zombie has no VmHWM line


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from ``/proc/<pid>/task/<tid>/children``)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(p) for p in children.read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            found += kids
            todo += kids
    return found
