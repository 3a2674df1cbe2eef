"""Evaluation throughput: the extrapolation probe (``accuracy_by_delay``), eager float32 against the fast path.

Both sides probe the same untrained ensemble at a preset's shape on mnist-5k, with the same trials, to
the longest delay given, timed alternately; the fast path gets every member's projected noise frames
from one bf16 matmul per 16 frames (``evaluate.FastNoise``: at the cpu shape G normals per member
times a factor of its projected noise's covariance, at the paper's shared pixel noise from its own
Philox stream) and steps the recurrence without autograd, one C kernel per step (``memrnn.fused``).
Prints probe frames per second (members x trials x frames / s) and the ratio, measured in this one
run, for GRU and LSTM, beside the CPU capability and how the bf16 matmuls ran (``memrnn.bf16``).

    python benchmarks/eval_throughput.py                        # cpu shape, 256 trials to delay 300
    python benchmarks/eval_throughput.py --preset gpu --delay 100
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from memrnn import bf16
from memrnn.evaluate import accuracy_by_delay
from memrnn.presets import make_config
from memrnn.train import Trainer


def probe_rates(model, bank, delay: int, trials: int, repeats: int) -> list[float]:
    """Eager and fast probes timed alternately (a changing load slows both alike); median rates."""
    accuracy_by_delay(model, bank, [4], trials, fast=True)  # warm-up
    times = [[], []]
    for _ in range(repeats):
        for fast, spent in zip((False, True), times):
            start = time.perf_counter()
            accuracy_by_delay(model, bank, [4, delay], trials, fast=fast)
            spent.append(time.perf_counter() - start)
    return [model.n_members * trials * delay / statistics.median(spent) for spent in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--delay", type=int, default=300, help="longest delay probed (frames)")
    parser.add_argument("--trials", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="alternating eager / fast probes per architecture")
    args = parser.parse_args()
    config = make_config(args.preset, dataset="mnist-5k", device="cpu")
    print(f"extrapolation probe at the {args.preset} shape: E={config.seeds} H={config.hidden_size}, "
          f"{args.trials} trials to delay {args.delay}, on cpu ({torch.get_num_threads()} threads)")
    print(f"{'arch':>5} {'eager fp32':>12} {'fast':>12} {'ratio':>7}   (member-trial-frames/s)", flush=True)
    for arch in ("gru", "lstm"):
        trainer = Trainer.build(make_config(args.preset, dataset="mnist-5k", arch=arch, device="cpu"))
        eager, fast = probe_rates(trainer.model, trainer.bank, args.delay, args.trials, args.repeats)
        print(f"{arch:>5} {eager:>12.0f} {fast:>12.0f} {fast / eager:>6.2f}x   {bf16.describe()}", flush=True)


if __name__ == "__main__":
    main()
