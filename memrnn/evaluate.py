"""Extrapolation: report accuracy on held-out images as a function of the delay.

A probe trial shows a test image at t = 0, then noise frames. The output at a report step
depends only on the state before it and the trigger frame, so one unroll of D noise frames gives
the accuracy at every delay <= D: at each requested delay d a trigger readout is branched off the
trajectory (one extra step on a copy of the state) while the trajectory itself continues with
trigger 0. Trials run in chunks, so memory stays bounded whatever the delay. All members see the
same probe images and noise, which makes comparisons between them paired.

On the fast path (``fast=True``, the runs of ``fast`` configurations) every member's projected noise
frames come many at a time from one bf16 matmul (``FastNoise``; on a CPU at the usual shapes drawn
directly in projected form, so members see the same images but each its own noise), and the
recurrence steps with one kernel per step, which reads that matmul's output where it lies
(``memrnn.fused``): a long unroll spends its time there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import bf16, noise, store
from .data import ImageBank
from .fused import BF16, inference_step
from .models import EnsembleRNN
from .runs import load_run, resolve_device

MAX_PROBE_SEED = 2**32 - 1  # the probe's seed: a word of the generators' seeds, like the members'


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
    noise_source = FastNoise(model, bank) if fast else None
    for start in range(0, len(trials), chunk_size):
        chunk = trials[start:start + chunk_size]
        correct[:, :, start:start + len(chunk)] = _probe(model, bank, chunk, delays, generator, noise_source)
    labels = bank.test_labels[trials]
    counts = torch.bincount(labels, minlength=bank.n_classes)
    per_class = torch.stack([correct[:, :, labels == c].float().mean(-1) for c in range(bank.n_classes)], -1)
    return DelayAccuracy(delays, per_class.cpu(), correct.float().mean(-1).cpu(), counts.tolist())


def evaluate_run(run_dir: Path, delays, n_trials: int | None = None, seed: int = 0,
                 device: str | None = None) -> dict:
    """Extrapolation curves of a finished run's final checkpoint, stored in its summary under
    ``extrapolation`` with that checkpoint's step and SHA-256 (returned from there when already computed
    with the same delays, trials, seed and checkpoint)."""
    if not (isinstance(seed, int) and 0 <= seed <= MAX_PROBE_SEED):
        raise ValueError(f"seed={seed!r} is not allowed: expected an integer from 0 to {MAX_PROBE_SEED}")
    if device is not None:
        resolve_device(device)  # a device that is not there is an error, also when the answer is cached
    store.read_config(run_dir)  # before the lock, which would create a missing directory
    with store.run_lock(run_dir):
        step = store.trained_step(run_dir)
        config = store.read_config(run_dir)
        n_trials = n_trials or config.eval_trials
        if n_trials < 1:
            raise ValueError(f"trials must be a positive integer, got {n_trials}")
        wanted = {"delays": sorted({int(d) for d in delays}), "n_trials": n_trials, "seed": seed,
                  "checkpoint_step": step, "checkpoint_sha256": store.checkpoint_sha256(run_dir, step)}
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
           generator: torch.Generator, noise_source: "FastNoise | None" = None) -> torch.Tensor:
    """Correctness (E, n_delays, B) of probe trials with the given test images, computed in the model's
    dtype; on the fast path when given its ``noise_source``."""
    E, B, device = model.n_members, len(trials), trials.device
    off = torch.zeros(E, B, device=device)
    targets = bank.test_labels[trials] + 1
    correct = torch.zeros(E, len(delays), B, dtype=torch.bool, device=device)
    state = model.step(model.init_state(B), bank.test_images[trials].to(model.weight_hh.dtype).expand(E, B, -1), off)
    wanted = {d: j for j, d in enumerate(delays)}
    trigger_row = model.weight_ih[:, -1:]
    if noise_source is not None:
        step, frames = inference_step(model, noise_source.offset), noise_source.frames(B, delays[-1], generator)
    else:
        def step(state, projected, extra=None):
            return model.recur(state, projected if extra is None else projected + extra)
        frames = _eager_noise_frames(model, bank, B, delays[-1], generator)
    for t, frame in zip(range(1, delays[-1] + 1), frames):
        if t in wanted:
            logits = model.readout(step(state, frame, trigger_row))
            correct[:, wanted[t]] = logits.argmax(-1) == targets
        if t < delays[-1]:
            state = step(state, frame)
    return correct


def _eager_noise_frames(model: EnsembleRNN, bank: ImageBank, B: int, n_frames: int, generator: torch.Generator,
                        frames_at_once: int = 16):
    """``n_frames`` pixel-noise frames shared by all members, trigger off: each member's input projection
    (E, B, G) with its bias."""
    E, device, dtype = model.n_members, model.weight_ih.device, model.weight_ih.dtype
    off = torch.zeros(E, B, device=device)
    for start in range(0, n_frames, frames_at_once):
        noise = torch.randn(min(frames_at_once, n_frames - start), B, bank.dim, generator=generator, device=device,
                            dtype=dtype)
        yield from (model.project(frame.expand(E, B, -1), off) for frame in noise * bank.noise_std + bank.noise_mean)


# A normal drawn (and read back by the matmul) costs about as long as this many multiply-adds of the bf16
# projection: fitted to fast probes of both kinds at the cpu and gpu shapes on two cores (2.8 ns against
# 7 ps). It decides which way FastNoise draws: projected at the cpu shape, pixels at the paper's.
NORMAL_COST = 400


class FastNoise:
    """The fast probe's noise frames: every member's projection of a pixel-noise frame without bias
    (B, E, G), in bf16, drawn in one of three ways:

    - *pixels*: D normals per trial frame (on a CPU from a Philox stream keyed by the probe's generator,
      ``memrnn.noise``), shared by all members, many frames of every member projected in one bf16 matmul;
    - *projected*, on a CPU where it costs less (E G (G + c) < D (E G + c), c = ``NORMAL_COST``): each
      member's projection of the centred noise is Gaussian with covariance std^2 W^T W (G x G, W its
      (D, G) input weights), so it is drawn directly, as G standard normals times a factor of that
      covariance, and its mean, mean x the column sums of W, joins the step's bias (``offset``). The same
      distribution for G / D of the matmul's work; members' noise is then independent, not shared;
    - *features*, for a model with a CNN front end: shared pixel noise (drawn in bf16) through each
      member's CNN in float32, its features projected in bf16.

    Why: the projection of the noise is the probe's main cost, and pixel noise shared by all members has
    a joint projection of rank D, which no sampler of it can undercut; the per-member one has rank G."""

    def __init__(self, model: EnsembleRNN, bank: ImageBank):
        self.model, self.bank = model, bank
        E, D, G = model.n_members, bank.dim, model.weight_ih.shape[-1]
        weight, self.offset = model.weight_ih[:, :-1].detach(), None
        if model.frontend is not None:
            self.mode, self.weight = "features", weight.to(BF16)
        elif weight.device.type == "cpu" and E * G * (G + NORMAL_COST) < D * (E * G + NORMAL_COST):
            self.mode, self.offset = "projected", bank.noise_mean * weight.sum(1, keepdim=True)
            self.weight = _covariance_factor(bank.noise_std * weight.double()).transpose(1, 2).to(BF16)
        else:  # (frames x B, D) @ (D, E x G): every member's projection of many frames in one bf16 matmul
            self.mode, self.weight = "pixels", weight.permute(1, 0, 2).reshape(D, -1).to(BF16)

    def frames(self, B: int, n_frames: int, generator: torch.Generator, frames_at_once: int = 16):
        """``n_frames`` frames (B, E, G) of B trials, as ``fused.inference_step(model, self.offset)`` takes them."""
        E, G, device = self.model.n_members, self.model.weight_ih.shape[-1], self.weight.device
        # kept from chunk to chunk (each frame is stepped before the next chunk overwrites it): tens of fresh
        # megabytes per chunk would cost hundreds of page faults per frame
        chunk = torch.empty(min(frames_at_once, n_frames) * B * E * G, dtype=BF16, device=device)
        normals = torch.empty_like(chunk) if self.mode == "projected" else None
        for start in range(0, n_frames, frames_at_once):
            K = min(frames_at_once, n_frames - start)
            out = chunk[: K * B * E * G]
            if self.mode == "pixels":
                yield from bf16.matmul(_bf16_noise(K * B, self.bank, generator), self.weight,
                                        out=out.view(K * B, E * G)).view(K, B, E, G)
                continue
            if self.mode == "projected":
                inputs = noise.normal_(normals[: K * B * E * G].view(E, K * B, G), noise.key(generator))
            else:
                pixels = _bf16_noise(K * B, self.bank, generator).to(self.model.weight_ih.dtype)
                inputs = self.model.frontend(pixels.expand(E, -1, -1)).to(BF16)
            # member-major (E, K x B, G): frame k of member e is its rows k B .. (k + 1) B
            projected = bf16.bmm(inputs, self.weight, out=out.view(E, K * B, G))
            yield from projected.view(E, K, B, G).transpose(0, 2).unbind(1)


def _covariance_factor(weight: torch.Tensor) -> torch.Tensor:
    """F (E, G, G) with F F^T = W^T W for each member's W (E, D, G): its Cholesky factor, or, where W^T W
    is singular (G > D, or a dead unit), the square root of its eigendecomposition."""
    covariance = weight.transpose(1, 2) @ weight
    factor, info = torch.linalg.cholesky_ex(covariance)
    for e in torch.nonzero(info).flatten().tolist():
        values, vectors = torch.linalg.eigh(covariance[e])
        factor[e] = vectors * values.clamp(min=0).sqrt()
    return factor


def _bf16_noise(n_pixels: int, bank: ImageBank, generator: torch.Generator) -> torch.Tensor:
    """(frames, D) pixel noise in bf16: on a CPU a Philox stream filled on every thread."""
    device = generator.device
    if device.type != "cpu":
        return (torch.randn(n_pixels, bank.dim, generator=generator, device=device) * bank.noise_std
                + bank.noise_mean).to(BF16)
    out = torch.empty(n_pixels, bank.dim, dtype=BF16)
    return noise.normal_(out, noise.key(generator), bank.noise_mean, bank.noise_std)
