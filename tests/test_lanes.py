"""Lanes (``medi.lanes``): parallel work in Python threads over single-threaded kernels, so results are the same bits
for any number of lanes, and a worker of a pool never runs more threads than its share of the cores."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import torch

from medi.lanes import lane_count, lane_map, set_lanes, single_threaded_kernels

# small query blocks against a large corpus: the shape whose product rounded otherwise with 2 torch threads than
# with 1 on this project's machine (medi/lanes.py)
BLOCK_ROWS, DIM, CORPUS = 5, 384, 20_000


def blocks(seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    rng = np.random.default_rng(seed)
    corpus = torch.from_numpy(rng.standard_normal((CORPUS, DIM), dtype=np.float32))
    return [torch.from_numpy(rng.standard_normal((BLOCK_ROWS, DIM), dtype=np.float32)) for _ in range(8)], corpus


def test_results_come_back_in_order_from_lane_threads():
    set_lanes(2)
    try:
        names = lane_map(lambda i: (i, threading.current_thread().name), range(6))
    finally:
        set_lanes(None)
    assert [i for i, _ in names] == list(range(6))
    assert all(name.startswith("medi-lane") for _, name in names)


def test_kernels_run_one_thread_inside_and_get_their_threads_back():
    before = torch.get_num_threads()
    inside = lane_map(lambda _: torch.get_num_threads(), range(4))
    assert inside == [1, 1, 1, 1]
    with single_threaded_kernels():
        with single_threaded_kernels():  # nested: still one until the outer one ends
            pass
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_block_products_are_the_same_bits_for_one_and_two_lanes():
    queries, corpus = blocks()
    results = {}
    for lanes in (1, 2):
        set_lanes(lanes)
        results[lanes] = lane_map(lambda q: (q @ corpus.T).numpy(), queries)
    set_lanes(None)
    assert all(np.array_equal(a, b) for a, b in zip(results[1], results[2], strict=True))


def test_a_process_has_one_lane_per_core_unless_told():
    code = "from medi.lanes import lane_count, cores\nprint(lane_count() == cores())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "True", done.stderr
    set_lanes(3)
    assert lane_count() == 3
    set_lanes(None)
