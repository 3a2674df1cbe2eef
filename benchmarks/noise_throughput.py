"""Noise throughput: a training batch's pixel noise from torch's ``normal_`` against ``memrnn.noise``.

Both fill the noise of one ``cpu``-shape batch (E members x T_max frames x batch x 784 pixels), one
generator or stream per member, members spread over the same threads (a thread pool for torch's,
torch's OpenMP threads for memrnn's), timed alternately in this one run: torch's mt19937 ``normal_``
into float32, and the Philox stream into float32 and into bf16 (what the fast path's sampler writes).
Prints millions of normals per second and the ratios.

    python benchmarks/noise_throughput.py                 # E=10, T=20, batch 32
    python benchmarks/noise_throughput.py --members 40 --batch 128
"""
from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from memrnn import noise


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    E, shape = args.members, (args.frames, args.batch, 784)
    wide, narrow = torch.empty(E, *shape), torch.empty(E, *shape, dtype=torch.bfloat16)
    generators = [torch.Generator().manual_seed(k) for k in range(E)]
    pool = ThreadPoolExecutor(torch.get_num_threads())
    fills = {
        "torch normal_": lambda: list(pool.map(lambda k: wide[k].normal_(0.13, 0.3, generator=generators[k]),
                                               range(E))),
        "Philox float32": lambda: noise.normal_(wide, range(E), 0.13, 0.3),
        "Philox bf16": lambda: noise.normal_(narrow, range(E), 0.13, 0.3),
    }
    times = {name: [] for name in fills}
    for round_ in range(args.repeats + 3):
        for name, fill in fills.items():
            start = time.perf_counter()
            fill()
            if round_ >= 3:
                times[name].append(time.perf_counter() - start)
    rates = {name: wide.numel() / statistics.median(spent) / 1e6 for name, spent in times.items()}
    print(f"{E} members x {shape[0]} frames x {shape[1]} trials x 784 pixels on {torch.get_num_threads()} "
          f"thread(s); median of {args.repeats} alternating fills")
    for name, rate in rates.items():
        print(f"{name:>15} {rate:8.0f} M normals/s {rate / rates['torch normal_']:6.2f}x")


if __name__ == "__main__":
    main()
