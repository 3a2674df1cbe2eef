"""Extrapolation: report accuracy on held-out images as a function of the delay.

A probe trial shows a test image at t = 0, then noise frames. The output at a report step
depends only on the state before it and the trigger frame, so one unroll of D noise frames gives
the accuracy at every delay <= D: at each requested delay d a trigger readout is branched off the
trajectory (one extra step on a copy of the state) while the trajectory itself continues with
trigger 0. Trials run in chunks, so memory stays bounded whatever the delay. All members see the
same probe images and noise, which makes comparisons between them paired.

On the fast path (``fast=True``, the runs of ``fast`` configurations) the noise frames, drawn in bf16
from their own stream, are projected for every member at once and many frames at a time in one bf16
matmul, and the recurrence steps with one kernel per step, which reads that matmul's output where it
lies (``memrnn.fused``): a long unroll spends its time there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import noise, store
from .data import ImageBank
from .fused import BF16, inference_step
from .models import EnsembleRNN
from .runs import load_run


@dataclass
class DelayAccuracy:
    delays: list[int]
    accuracy: torch.Tensor      # (E, n_delays, n_classes) fraction correct per class
    overall: torch.Tensor       # (E, n_delays) fraction correct over all trials
    trials_per_class: list[int]

    def to_json(self) -> dict:
        return {"delays": self.delays, "classes": list(range(len(self.trials_per_class))),
                "trials_per_class": self.trials_per_class,
                "accuracy": self.accuracy.tolist(), "overall": self.overall.tolist()}


@torch.no_grad()
def accuracy_by_delay(model: EnsembleRNN, bank: ImageBank, delays, n_trials: int,
                      seed: int = 0, chunk_size: int = 256, fast: bool = False) -> DelayAccuracy:
    """Accuracy of every member at every delay in ``delays`` (steps from stimulus to report)."""
    delays = sorted({int(d) for d in delays})
    if not delays or delays[0] < 1:
        raise ValueError(f"delays must be positive integers, got {delays}")
    device = model.weight_hh.device
    generator = torch.Generator(device).manual_seed(seed)
    n_test = len(bank.test_labels)
    trials = torch.randperm(n_test, generator=generator, device=device)[: min(n_trials, n_test)]
    correct = torch.zeros(model.n_members, len(delays), len(trials), dtype=torch.bool, device=device)
    for start in range(0, len(trials), chunk_size):
        chunk = trials[start:start + chunk_size]
        correct[:, :, start:start + len(chunk)] = _probe(model, bank, chunk, delays, generator, fast)
    labels = bank.test_labels[trials]
    counts = torch.bincount(labels, minlength=bank.n_classes)
    per_class = torch.stack([correct[:, :, labels == c].float().mean(-1) for c in range(bank.n_classes)], -1)
    return DelayAccuracy(delays, per_class.cpu(), correct.float().mean(-1).cpu(), counts.tolist())


def evaluate_run(run_dir: Path, delays, n_trials: int | None = None, seed: int = 0,
                 device: str | None = None) -> dict:
    """Extrapolation curves of a finished run's final checkpoint, stored in its summary under
    ``extrapolation`` with that checkpoint's step (returned from there when already computed with the
    same delays, trials, seed and checkpoint)."""
    store.read_config(run_dir)  # before the lock, which would create a missing directory
    with store.run_lock(run_dir):
        step = store.trained_step(run_dir)
        config = store.read_config(run_dir)
        n_trials = n_trials or config.eval_trials
        if n_trials < 1:
            raise ValueError(f"trials must be a positive integer, got {n_trials}")
        wanted = {"delays": sorted({int(d) for d in delays}), "n_trials": n_trials, "seed": seed,
                  "checkpoint_step": step}
        cached = store.read_summary(run_dir).get("extrapolation")
        if isinstance(cached, dict) and all(cached.get(k) == v for k, v in wanted.items()):
            return cached
        config, model, bank = load_run(run_dir, step, device=device)
        if n_trials > len(bank.test_labels):
            raise ValueError(f"trials={n_trials} is more than the {len(bank.test_labels)} held-out images of "
                             f"{config.dataset}: ask for at most that many")
        result = accuracy_by_delay(model, bank, delays, n_trials, seed, fast=config.fast)
        section = {**result.to_json(), **wanted, "member_seeds": config.member_seeds}
        store.update_summary(run_dir, extrapolation=section)
        return section


def _probe(model: EnsembleRNN, bank: ImageBank, trials: torch.Tensor, delays: list[int],
           generator: torch.Generator, fast: bool = False) -> torch.Tensor:
    """Correctness (E, n_delays, B) of probe trials with the given test images, computed in the model's
    dtype."""
    E, B, device = model.n_members, len(trials), trials.device
    off = torch.zeros(E, B, device=device)
    targets = bank.test_labels[trials] + 1
    correct = torch.zeros(E, len(delays), B, dtype=torch.bool, device=device)
    state = model.step(model.init_state(B), bank.test_images[trials].to(model.weight_hh.dtype).expand(E, B, -1), off)
    wanted = {d: j for j, d in enumerate(delays)}
    trigger_row = model.weight_ih[:, -1:]
    if fast:
        step = inference_step(model)
    else:
        def step(state, projected, extra=None):
            return model.recur(state, projected if extra is None else projected + extra)
    for t, frame in zip(range(1, delays[-1] + 1), _noise_frames(model, bank, B, delays[-1], generator, fast)):
        if t in wanted:
            logits = model.readout(step(state, frame, trigger_row))
            correct[:, wanted[t]] = logits.argmax(-1) == targets
        if t < delays[-1]:
            state = step(state, frame)
    return correct


def _noise_frames(model: EnsembleRNN, bank: ImageBank, B: int, n_frames: int, generator: torch.Generator,
                  fast: bool, frames_at_once: int = 16):
    """``n_frames`` pixel-noise frames shared by all members, trigger off, as the probe's step takes them:
    eager, each member's input projection (E, B, G) with its bias; on the fast path every member's
    projection without bias (B, E, G) in bf16 (``fused.inference_step``), the noise drawn in bf16 (on a
    CPU from a Philox stream keyed by the generator, ``memrnn.noise``) and many frames of every member
    projected in one bf16 matmul."""
    E, device, dtype = model.n_members, model.weight_ih.device, model.weight_ih.dtype
    if fast:  # (frames x B, D) @ (D, E x G): every member's projection of many frames in one bf16 matmul
        weight = model.weight_ih[:, :-1].permute(1, 0, 2).reshape(bank.dim, -1).to(BF16)
        # kept from chunk to chunk (each frame is stepped before the next chunk overwrites it): tens of fresh
        # megabytes per chunk would cost hundreds of page faults per frame
        chunk = torch.empty(min(frames_at_once, n_frames) * B, weight.shape[-1], dtype=BF16, device=device)
    for start in range(0, n_frames, frames_at_once):
        K = min(frames_at_once, n_frames - start)
        if fast:
            yield from torch.matmul(_bf16_noise(K * B, bank, generator), weight, out=chunk[: K * B]).view(K, B, E, -1)
            continue
        noise = torch.randn(K, B, bank.dim, generator=generator, device=device, dtype=dtype)
        noise = noise * bank.noise_std + bank.noise_mean
        yield from (model.project(frame.expand(E, B, -1), torch.zeros(E, B, device=device)) for frame in noise)


def _bf16_noise(n_pixels: int, bank: ImageBank, generator: torch.Generator) -> torch.Tensor:
    """(frames, D) pixel noise in bf16: on a CPU a Philox stream filled on every thread."""
    device = generator.device
    if device.type != "cpu":
        return (torch.randn(n_pixels, bank.dim, generator=generator, device=device) * bank.noise_std
                + bank.noise_mean).to(BF16)
    out = torch.empty(n_pixels, bank.dim, dtype=BF16)
    return noise.normal_(out, noise.key(generator), bank.noise_mean, bank.noise_std)
