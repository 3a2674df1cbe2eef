"""Wall time of the same small grid run in one process and on the local Dask cluster, in one run.

Each condition is a smoke-sized ensemble trained long enough (``--steps``) to take tens of seconds,
so the ratio shows what the engine costs or gains: with W workers and at least W conditions the
ideal is about W (on two cores: 2; "no cost for the engine" means at least 0.95). Every timing
starts from an empty run folder.

    python benchmarks/campaign_parallel.py [--steps 1000] [--workers 2,4]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from memrnn.campaign import run_grid
from memrnn.engine import local_cluster

ARCHS, PROTOCOLS = ["gru", "lstm"], ["decu", "none"]


def timed(scheduler, out: Path, steps: int) -> float:
    start = time.perf_counter()
    run_grid("smoke", ARCHS, PROTOCOLS, delays=[4, 100], out=out, progress=False, scheduler=scheduler,
             steps=steps, hidden_size=64, seeds=5, device="cpu")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per condition")
    parser.add_argument("--workers", default="", help="comma-separated cluster sizes (default: one per core or GPU)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.workers.split(",") if n] or [None]
    with tempfile.TemporaryDirectory() as tmp:
        sequential = timed("sync", Path(tmp) / "sequential", args.steps)
        print(f"{len(ARCHS) * len(PROTOCOLS)} conditions, {args.steps} steps each; in one process "
              f"({torch.get_num_threads()} torch threads): {sequential:.1f} s", flush=True)
        for n in sizes:
            start = time.perf_counter()  # the cluster's start and close count against it
            with local_cluster(n) as cluster:
                n = len(cluster.workers)
                timed(cluster.scheduler_address, Path(tmp) / f"dask-{n}", args.steps)
            elapsed = time.perf_counter() - start
            print(f"local cluster of {n} workers: {elapsed:.1f} s, speed-up {sequential / elapsed:.2f}x")


if __name__ == "__main__":
    main()
