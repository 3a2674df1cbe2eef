"""Wall time of the same small grid, and of its slow-point analyses, in one process and on the local
Dask cluster, in one run.

Each condition is a smoke-sized ensemble trained long enough (``--steps``) to take tens of seconds,
so the ratio shows what the engine costs or gains: with W workers and at least W conditions the
ideal is about W (on two cores: 2; "no cost for the engine" means at least 0.95). Every timing
starts from an empty run folder. The analyses are chapter C3's: every run's slow points with the
reference search (``--search-iterations``, as at the ``cpu`` preset) and with Levenberg-Marquardt.

    python benchmarks/campaign_parallel.py [--steps 1000] [--workers 2,4] [--search-iterations 20000]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from memrnn.campaign import each_run, run_grid
from memrnn.engine import local_cluster
from memrnn.slowpoints import analyse_run

ARCHS, PROTOCOLS = ["gru", "lstm"], ["decu", "none"]


def timed(scheduler, out: Path, steps: int, search_iterations: int) -> float:
    start = time.perf_counter()
    run_grid("smoke", ARCHS, PROTOCOLS, delays=[4, 100], out=out, progress=False, scheduler=scheduler,
             steps=steps, hidden_size=64, seeds=5, device="cpu", search_iterations=search_iterations)
    return time.perf_counter() - start


def analysed(scheduler, out: Path) -> float:
    run_dirs = sorted(path for path in out.iterdir() if path.is_dir())
    start = time.perf_counter()
    each_run(analyse_run, run_dirs, progress=False, scheduler=scheduler)
    each_run(analyse_run, run_dirs, progress=False, scheduler=scheduler, search="lm")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per condition")
    parser.add_argument("--workers", default="", help="comma-separated cluster sizes (default: one per core or GPU)")
    parser.add_argument("--search-iterations", type=int, default=20_000, help="iterations of the reference search")
    args = parser.parse_args()
    sizes = [int(n) for n in args.workers.split(",") if n] or [None]
    with tempfile.TemporaryDirectory() as tmp:
        sequential = timed("sync", Path(tmp) / "sequential", args.steps, args.search_iterations)
        print(f"{len(ARCHS) * len(PROTOCOLS)} conditions, {args.steps} steps each; in one process "
              f"({torch.get_num_threads()} torch threads): training {sequential:.1f} s", flush=True)
        sequential_analyses = analysed("sync", Path(tmp) / "sequential")
        print(f"  their slow points, two searches each: {sequential_analyses:.1f} s", flush=True)
        for n in sizes:
            start = time.perf_counter()  # the cluster's start and close count against the training
            with local_cluster(n) as cluster:
                n = len(cluster.workers)
                timed(cluster.scheduler_address, Path(tmp) / f"dask-{n}", args.steps, args.search_iterations)
                elapsed = time.perf_counter() - start
                analyses = analysed(cluster.scheduler_address, Path(tmp) / f"dask-{n}")
            print(f"local cluster of {n} workers: training {elapsed:.1f} s, speed-up {sequential / elapsed:.2f}x; "
                  f"slow points {analyses:.1f} s, speed-up {sequential_analyses / analyses:.2f}x", flush=True)


if __name__ == "__main__":
    main()
