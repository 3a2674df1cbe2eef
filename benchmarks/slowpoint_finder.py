"""Slow-point finder speed: Levenberg-Marquardt (the default) against plain Adam, in one run.

Takes member 0 of a trained run, samples N start states from its probe trajectories, then
1. runs LM until every point reaches q <= tol or stalls;
2. runs plain Adam (the reference method: lr 1e-3, no stall stop) from the same starts until each
   point is as slow as LM left it, or the iteration cap;
3. runs LM again, stopping each point as soon as it is as slow as Adam left it (with a lenient
   stall rule, so LM may follow a slow valley as far as Adam did).
Prints the three times and final q, and the ratio Adam / LM at equal final q (3 against 2).

    python benchmarks/slowpoint_finder.py runs/mnist-5k-gru-none-<hash> --points 1024
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from safetensors.torch import save_file

from memrnn.runs import load_run
from memrnn.slowpoints import find_slow_points, rest_input, sample_states


def _describe(name, result, seconds, tol):
    q = result.q.flatten()
    return (f"{name:<12} {seconds:>8.1f} s  median q {q.median():.2e}  max q {q.max():.2e}  "
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

    start = time.perf_counter()
    adam = find_slow_points(model, bank, starts, "adam", tol=lm.q.clamp_min(args.tol), lr=args.adam_lr,
                            max_iter=args.adam_max_iter, patience=args.adam_max_iter)
    adam_time = time.perf_counter() - start
    print(_describe("adam", adam, adam_time, args.tol))
    print(f"Adam reached LM's final q at {int((adam.q <= lm.q.clamp_min(args.tol)).sum())}/{args.points} points")

    start = time.perf_counter()
    lm_to_adam = find_slow_points(model, bank, starts, "lm", tol=adam.q, patience=20, progress=1e-3)
    match_time = time.perf_counter() - start
    print(_describe("lm→adam's q", lm_to_adam, match_time, args.tol))
    print(f"at equal final q (Adam's): adam {adam_time:.1f} s / lm {match_time:.1f} s = {adam_time / match_time:.1f}x; "
          f"LM matched Adam at {int((lm_to_adam.q <= adam.q).sum())}/{args.points} points")
    behind = lm_to_adam.q > adam.q
    if behind.any():
        print(f"where LM stopped above Adam's q: median q lm {lm_to_adam.q[behind].median():.2e}, adam "
              f"{adam.q[behind].median():.2e}; lm iterations {lm_to_adam.iterations[behind].tolist()}")


if __name__ == "__main__":
    main()
