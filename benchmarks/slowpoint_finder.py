"""Slow-point finder speed: Levenberg-Marquardt (the default) against plain Adam, in one run.

Takes member 0 of a trained run, samples N start states from its probe trajectories, and
1. runs LM until every point reaches q <= tol or stalls, timing it;
2. runs Adam (the reference method, lr 1e-3) from the same starts until each point is at least as
   slow as LM left it (or stalls / hits the cap), timing it.
Prints both times, the final q, how many points reached LM's q, and the ratio Adam / LM.

    python benchmarks/slowpoint_finder.py runs/mnist-5k-gru-none-<hash> --points 1024
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from memrnn.runs import load_run
from memrnn.slowpoints import find_slow_points, rest_input, sample_states


def _describe(name, result, seconds, tol):
    q = result.q.flatten()
    return (f"{name:<6} {seconds:>8.1f} s  median q {q.median():.2e}  max q {q.max():.2e}  "
            f"q<={tol:g}: {int((q <= tol).sum())}/{q.numel()}  mean iterations {result.iterations.float().mean():.0f}  "
            f"outside (-1,1)^H: {int((~result.in_region).sum())}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--adam-lr", type=float, default=1e-3)
    parser.add_argument("--adam-max-iter", type=int, default=20_000)
    parser.add_argument("--save-starts", type=Path, help="write start states and the network's input here")
    args = parser.parse_args()

    _, model, bank = load_run(args.run_dir)
    model = model.member(0)
    starts = sample_states(model, bank, args.points)
    print(f"{model.arch.upper()} H={model.hidden_size}, {args.points} start states, "
          f"median start q {find_slow_points(model, bank, starts, max_iter=0).q.median():.2e}")
    if args.save_starts:
        save_file({"starts": starts[0].contiguous(), "projected_input": rest_input(model, bank)[0, 0].detach().contiguous()},
                  args.save_starts)

    start = time.perf_counter()
    lm = find_slow_points(model, bank, starts, "lm", tol=args.tol)
    lm_time = time.perf_counter() - start
    print(_describe("lm", lm, lm_time, args.tol))

    target = lm.q.clamp_min(args.tol)
    start = time.perf_counter()
    adam = find_slow_points(model, bank, starts, "adam", tol=target, lr=args.adam_lr, max_iter=args.adam_max_iter)
    adam_time = time.perf_counter() - start
    print(_describe("adam", adam, adam_time, args.tol))
    matched = int((adam.q <= target).sum())
    print(f"Adam reached LM's final q at {matched}/{args.points} points; time ratio adam/lm = {adam_time / lm_time:.1f}x"
          + ("" if matched == args.points else " (a lower bound: Adam stopped before matching LM everywhere)"))


if __name__ == "__main__":
    main()
