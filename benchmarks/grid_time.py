"""Wall time of the book's main grid, eager float32 against the fast path, measured in one run.

The grid is chapter 01's: every (arch, protocol) of GRU/LSTM x DeCu/VoCu/none at a preset on one
dataset, each condition trained (with its real curriculum) and then evaluated at every delay, as
tasks on the local Dask cluster with the book's one-thread workers. Only the number of training
steps is cut (``--steps``), so a slice takes minutes, not the grid's hour. The two sides run
alternately from empty run folders, ``--repeats`` times each, and are compared by their median
wall times; the ratio is what the fast path (``fast=True``, with its Philox noise) would buy a book's
training and evaluation, printed beside the CPU capability and how the bf16 matmuls ran
(``memrnn.bf16``).

    python benchmarks/grid_time.py                     # cpu preset, mnist-5k, 600 steps, 2 repeats
    python benchmarks/grid_time.py --steps 300 --repeats 1
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from memrnn import bf16
from memrnn.campaign import run_grid
from memrnn.engine import local_cluster

ARCHS, PROTOCOLS = ["gru", "lstm"], ["decu", "vocu", "none"]


def grid_seconds(scheduler: str, out: Path, preset: str, dataset: str, steps: int, fast: bool) -> float:
    start = time.perf_counter()
    run_grid(preset, ARCHS, PROTOCOLS, out=out, scheduler=scheduler, dataset=dataset, steps=steps, fast=fast,
             noise="philox" if fast else None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--steps", type=int, default=600, help="training steps per condition")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    seconds = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp, local_cluster() as cluster:
        workers = len(cluster.workers)
        print(f"main grid at {args.preset} on {args.dataset}: {len(ARCHS) * len(PROTOCOLS)} conditions, "
              f"{args.steps} steps each, trained and evaluated on {workers} one-thread workers", flush=True)
        for repeat in range(args.repeats):
            for fast in (False, True):
                out = Path(tmp) / f"{'fast' if fast else 'fp32'}-{repeat}"
                seconds[fast].append(grid_seconds(cluster.scheduler_address, out, args.preset, args.dataset,
                                                  args.steps, fast))
                print(f"  {'fast' if fast else 'eager fp32':>10}: {seconds[fast][-1]:7.1f} s", flush=True)
    eager, fast = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"median: eager fp32 {eager:.1f} s, fast {fast:.1f} s, ratio {eager / fast:.2f}x   {bf16.describe()}")


if __name__ == "__main__":
    main()
