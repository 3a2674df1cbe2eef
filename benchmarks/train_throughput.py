"""Training throughput: one ensemble of E networks versus a loop over E separate torch.nn networks.

Both sides do the same work per network-step (forward over T frames, weighted loss on every step,
backward, Adam) on the same pre-generated batches, measured in this one run. Prints
network-steps per second and the ratio to the loop (cuDNN on a GPU) for the ensemble in eager
float32 and, with ``--fast``, compiled in float32 and compiled under bf16 autocast with fused Adam
(the ``fast`` training path). ``--deadline`` stops starting new rows after that many seconds, so a
time-boxed run still prints the rows it finished.

    python benchmarks/train_throughput.py --members 1,5,20 --hidden 100 --batch 32
    python benchmarks/train_throughput.py --members 1,10,40,160 --hidden 200 --batch 128 --fast   # GPU

``--trainer PRESET`` times memrnn's own training step instead (``Trainer.step``: drawing the batch,
unroll, loss, backward, Adam) at that preset's shape on mnist-5k, in eager float32 and on the fast path
(``fast=True, noise=philox``; on a CPU: Philox noise drawn in bf16 into the projection's matrix, bf16
input projection, the whole unroll forward and back each one C call, members on torch's OpenMP
threads), with the ratio of the two, for GRU and LSTM, full-length trials (T_max = 20), each ratio
beside the CPU capability and how the bf16 matmuls ran (``memrnn.bf16``: natively, or as float32
matmuls where the CPU has no bf16 multiply). The two are timed alternately, step by step, and
compared by their median step times, so a machine whose load changes during the run slows both alike:

    python benchmarks/train_throughput.py --trainer cpu          # E=10, H=100, batch 32
    python benchmarks/train_throughput.py --trainer gpu --steps 4  # the paper's shape: E=10, H=200, batch 128
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from memrnn import bf16
from memrnn.models import EnsembleRNN
from memrnn.presets import make_config
from memrnn.runs import task_spec
from memrnn.task import TrialSampler
from memrnn.train import Trainer


def _batch(E, B, T, D, device):
    g = torch.Generator(device).manual_seed(0)
    frames = torch.randn(E, B, T, D, generator=g, device=device)
    trigger = (torch.rand(E, B, T, generator=g, device=device) < 0.05).float()
    targets = torch.randint(0, 11, (E, B, T), generator=g, device=device)
    return frames, trigger, targets


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ensemble(arch, E, H, frames, trigger, targets, steps, compiled=False, bf16=False):
    """The ensemble in eager float32, compiled, or compiled under bf16 autocast with fused Adam."""
    model = EnsembleRNN(arch, E, frames.shape[-1], H).to(frames.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=bf16 or None)
    forward = torch.compile(model) if compiled else model

    def one_step():
        with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = forward(frames, trigger).float()
        loss = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), reduction="none").view(E, -1).mean(1)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()

    return _timed(one_step, steps, frames.device) * E


def time_loop(arch, E, H, frames, trigger, targets, steps):
    cls = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[arch]
    device = frames.device
    nets = [(cls(frames.shape[-1] + 1, H, batch_first=True).to(device), nn.Linear(H, 11).to(device)) for _ in range(E)]
    optimizers = [torch.optim.Adam([*rnn.parameters(), *lin.parameters()], lr=1e-4) for rnn, lin in nets]
    inputs = torch.cat([frames, trigger[..., None]], -1)

    def one_step():
        for k, ((rnn, lin), optimizer) in enumerate(zip(nets, optimizers)):
            out, _ = rnn(inputs[k])
            loss = F.cross_entropy(lin(out).flatten(0, 1), targets[k].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return _timed(one_step, steps, device) * E


def trainer_table(preset, steps, device):
    """Eager and fast ``Trainer.step`` timed alternately, step by step, so that a machine whose load
    changes during the run slows both alike; the median step time of each gives the rates."""
    config = make_config(preset, dataset="mnist-5k")
    print(f"memrnn training steps at the {preset} shape: E={config.seeds} H={config.hidden_size} "
          f"batch={config.batch_size} T={config.n_frames}, on {_device_name(device)}; median of {steps} "
          "alternating steps")
    print(f"{'arch':>5} {'eager fp32':>12} {'fast':>12} {'ratio':>7}   (network-steps/s)", flush=True)
    for arch in ("gru", "lstm"):
        steppers = []
        for fast in (False, True):
            config = make_config(preset, dataset="mnist-5k", arch=arch, fast=fast, device=device.type,
                                 noise="philox" if fast else None)
            trainer = Trainer.build(config)
            sampler = TrialSampler(trainer.bank, task_spec(config))
            steppers.append(lambda t=trainer, s=sampler, c=config: t.step(s, c.n_frames, 10, c.lr))
        eager, fast = (config.seeds / seconds for seconds in _alternating(steppers, steps, device))
        print(f"{arch:>5} {eager:>12.1f} {fast:>12.1f} {fast / eager:>6.2f}x   {bf16.describe()}", flush=True)


def _alternating(functions, repeats, device) -> list[float]:
    """Median seconds per call of each function, calls interleaved, after three warm-up rounds."""
    times = [[] for _ in functions]
    for round_ in range(repeats + 3):
        for f, spent in zip(functions, times):
            start = time.perf_counter()
            f()
            _sync(device)
            if round_ >= 3:
                spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def _device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def _timed(one_step, steps, device) -> float:
    """Steps per second after three warm-up steps (which also compile the fast path)."""
    for _ in range(3):
        one_step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    _sync(device)
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="gru", choices=["gru", "lstm", "rnn"])
    parser.add_argument("--members", default="1,5,20", help="comma-separated ensemble sizes")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--input", type=int, default=784, help="pixels per frame (trigger added)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fast", action="store_true", help="also time the compiled fp32 and bf16 ensembles")
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds after which no new row starts")
    parser.add_argument("--trainer", metavar="PRESET", help="time memrnn's training step at this preset's shape, "
                        "eager float32 against the fast path")
    args = parser.parse_args()
    began = time.perf_counter()
    device = torch.device(args.device)
    if args.trainer:
        return trainer_table(args.trainer, args.steps, device)
    name = _device_name(device)
    print(f"{args.arch.upper()} H={args.hidden} batch={args.batch} T={args.frames} input={args.input}+1 on {name}")
    variants = {"eager fp32": {}}
    if args.fast:
        variants.update({"compiled fp32": {"compiled": True}, "compiled bf16": {"compiled": True, "bf16": True}})
    print(f"network-steps/s (ratio to the loop of {'cuDNN' if device.type == 'cuda' else 'torch.nn'} networks)")
    print(f"{'E':>5} {'loop':>10}" + "".join(f" {name:>24}" for name in variants), flush=True)
    for E in (int(e) for e in args.members.split(",")):
        if time.perf_counter() - began > args.deadline:
            print(f"deadline of {args.deadline:.0f} s reached: E = {E} and later not measured", flush=True)
            break
        data = _batch(E, args.batch, args.frames, args.input, device)
        loop = time_loop(args.arch, E, args.hidden, *data, args.steps)
        line = f"{E:>5} {loop:>10.1f}"
        for options in variants.values():
            rate = time_ensemble(args.arch, E, args.hidden, *data, args.steps, **options)
            line += f" {rate:>15.1f} ({rate / loop:>5.1f}x)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
