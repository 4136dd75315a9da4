"""Lanes: parallel work whose results do not depend on how many threads do it.

Multi-threaded math kernels (torch's intra-op threads, MKL, OpenBLAS and OpenMP in faiss) may split one product
across threads, and then round otherwise with another thread count: on this project's 2-core machine a
(5 x 384) x (384 x 20,000) matmul came out other bits with 2 torch threads than with 1 (64 rows did not). A release
must be the same bytes whatever the number of workers — and a worker's share of the cores is cores // workers — so
the heavy loops (the encoder's batches, the miner's query blocks) run their kernels single-threaded and get their
parallelism from lanes instead: Python threads, each computing whole items (the kernels release the GIL). An item's
result then depends on the item alone; the number of lanes only changes when it is computed. It also keeps a worker
from oversubscribing the cores: N workers x (cores // N) lanes, each one thread.

A process sets its lanes once (``set_lanes``: an executor gives each worker its share of the cores); by default a
process has one lane per core.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_lanes: int | None = None
_depth = 0  # lane_map calls open in this process: kernels go back to their threads when the last one ends
_lock = threading.Lock()
_saved: dict = {}
_lane_state = threading.local()


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_lanes(count: int | None) -> None:
    """This process runs ``count`` lanes (at least one) from now on; None: one per core again."""
    global _lanes
    _lanes = None if count is None else max(1, int(count))


def lane_count() -> int:
    """The lanes of this process: what ``set_lanes`` gave, else one per core."""
    return _lanes or cores()


def lane_map(work: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """``[work(item) for item in items]``, on this process's lanes, with every math kernel single-threaded; results
    in the order of ``items``. ``work`` must not depend on which lane runs it (nor on shared state it mutates)."""
    items = list(items)
    with single_threaded_kernels():
        lanes = min(lane_count(), len(items))
        if lanes <= 1:
            return [_in_lane(work, item) for item in items]
        with ThreadPoolExecutor(lanes, thread_name_prefix="medi-lane") as pool:
            return list(pool.map(lambda item: _in_lane(work, item), items))


def serial_map(work: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """``lane_map``'s signature, in this thread with the kernels as they are: for a GPU, where threads change no bits
    and lanes would only contend for the device."""
    return [work(item) for item in items]


def _in_lane(work: Callable[[Item], Result], item: Item) -> Result:
    if not getattr(_lane_state, "limited", False):
        _limit_this_thread()
        _lane_state.limited = True
    return work(item)


def _limit_this_thread() -> None:
    """One OpenMP thread for calls from this thread: OpenMP keeps its thread count per calling thread, and a new
    thread starts from the runtime's default (all cores) — torch's libgomp and faiss's own, seen here by
    threadpoolctl."""
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().limit(limits=1, user_api="openmp")


@contextmanager
def single_threaded_kernels() -> Iterator[None]:
    """Torch, BLAS and OpenMP run one thread per call inside; their settings come back when the outermost
    ``single_threaded_kernels`` of the process ends (they nest, from any thread)."""
    global _depth
    with _lock:
        if _depth == 0:
            _saved.update(_limit_kernels())
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _restore_kernels(_saved)
                _saved.clear()


def _limit_kernels() -> dict:
    from threadpoolctl import ThreadpoolController  # a fresh look (0.4 ms): libraries loaded since, faiss's too

    torch = sys.modules.get("torch")
    saved = {"torch": torch.get_num_threads()} if torch else {}  # read before the OpenMP limit: torch reads it
    saved["blas"] = ThreadpoolController().limit(limits=1)
    if torch:  # torch's intra-op threads (and the MKL it sets) are process-wide
        torch.set_num_threads(1)
    return saved


def _restore_kernels(saved: dict) -> None:
    saved["blas"].restore_original_limits()  # first: it would set the OpenMP count torch reads back to one
    if "torch" in saved:
        sys.modules["torch"].set_num_threads(saved["torch"])
