"""memrnn's fixed-point search against FixedPointFinder (Golub & Sussillo 2018) on the flip-flop GRU.

Both start from the same states (sampled from the network's held-out trajectories with noise, as
FixedPointFinder's own flip-flop example does: 1,024 starts, noise 0.5), with the input held at 0,
and are judged by the same yardsticks, computed here rather than read from either tool: q at the
end, whether the point lies in (-1, 1)^H (the only states a GRU can visit), stability from the
Jacobian by autograd, and how many of the 2^3 bit patterns the stable points hold (readout signs).
FixedPointFinder is not a dependency of memrnn: point ``--fpf`` at a checkout of
github.com/mattgolub/fixed-point-finder (its PyTorch finder needs only numpy). Each finder runs
``--repeats`` times, alternating; times are medians, and the ratio is taken within this run.

    python benchmarks/fixed_points_vs_fpf.py --fpf path/to/fixed-point-finder --runs runs
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from memrnn import find_fixed_points, flipflop, reachable_region, sample_starts, step_function
from memrnn.fixedpoints import jacobian


def judge(name, net, step, points, x, seconds, tol):
    """The shared yardsticks for the points (P, H) a finder returned."""
    with torch.no_grad():
        q = (step(points, x.expand(len(points), -1)) - points).square().sum(-1)
        inside = (points.abs() < 1).all(-1)
    eig = torch.linalg.eigvals(jacobian(step, points, x)).abs().amax(-1)
    good = (q <= tol) & inside
    stable = good & (eig < 1)
    with torch.no_grad():
        patterns = {tuple(p) for p in net.readout(points[stable]).sign().int().tolist()}
    return {"name": name, "seconds": seconds, "points": len(points), "converged": int((q <= tol).sum()),
            "outside": int((~inside).sum()), "median_q": float(q.median()), "max_q": float(q.max()),
            "stable": int(stable.sum()), "saddles": int((good & (eig >= 1)).sum()), "patterns": len(patterns)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fpf", type=Path, required=True, help="a checkout of FixedPointFinder")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the flip-flop network is cached")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--starts", type=int, default=1024)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--tol", type=float, default=1e-12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not (args.fpf / "FixedPointFinderTorch.py").exists():
        raise SystemExit(f"--fpf {args.fpf}: no FixedPointFinderTorch.py there")
    sys.path.insert(0, str(args.fpf))
    from FixedPointFinderTorch import FixedPointFinderTorch

    config = flipflop.make_config(args.preset)
    net = flipflop.trained(config, args.runs)
    inputs, _ = flipflop.trials(config, 256, torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, states = net(inputs)
    starts = sample_starts(states, args.starts, args.noise, seed=0)
    x = torch.zeros(config.bits)
    step = step_function(net.gru)

    def ours():
        found = find_fixed_points(step, starts, x, region=reachable_region(net.gru), tol=args.tol)
        return found.points

    def theirs():
        # the settings of FixedPointFinder's own flip-flop example
        finder = FixedPointFinderTorch(net.gru, max_iters=10000, lr_init=1.0, outlier_distance_scale=10.0,
                                       tol_q=args.tol, verbose=False, super_verbose=False)
        _, all_fps = finder.find_fixed_points(starts.numpy().astype(np.float32), np.zeros((1, config.bits), np.float32))
        return torch.as_tensor(all_fps.xstar, dtype=starts.dtype)

    timings, last = {"memrnn LM": [], "FixedPointFinder": []}, {}
    for _ in range(args.repeats):
        for name, finder in (("memrnn LM", ours), ("FixedPointFinder", theirs)):
            began = time.perf_counter()
            last[name] = finder()
            timings[name].append(time.perf_counter() - began)
    rows = [judge(name, net, step, last[name], x, statistics.median(timings[name]), args.tol) for name in timings]
    print(f"flip-flop GRU ({config.hidden_size} units), {args.starts} starts (noise {args.noise}), input 0, "
          f"q <= {args.tol:g}; medians of {args.repeats} alternating runs on {torch.get_num_threads()} thread(s)")
    print(f"{'finder':<18}{'time (s)':>9}{'q<=tol':>8}{'outside':>9}{'median q':>10}{'max q':>10}"
          f"{'stable':>8}{'saddles':>9}{'patterns':>10}")
    for r in rows:
        print(f"{r['name']:<18}{r['seconds']:>9.2f}{r['converged']:>8}{r['outside']:>9}{r['median_q']:>10.1e}"
              f"{r['max_q']:>10.1e}{r['stable']:>8}{r['saddles']:>9}{r['patterns']:>7} / 8")
    ours_row, theirs_row = rows
    print(f"time ratio FixedPointFinder / memrnn LM: {theirs_row['seconds'] / ours_row['seconds']:.1f}x")


if __name__ == "__main__":
    main()
