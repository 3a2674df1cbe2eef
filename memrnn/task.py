"""The delayed classification task: an image shown once among noise frames, reported on a trigger.

Training trials follow the reference exactly: ``T`` frames; stimulus time ``t_s ~ U{0..T_max-Δ-1}``,
report time ``t_r ~ U{t_s+Δ..T_max-1}``; every frame but the stimulus is i.i.d. Gaussian pixel noise
with the dataset's pixel statistics; a separate trigger channel is 1 only at ``t_r``. Output 0 is
"null", output k+1 is image class k. The target is null at every step before ``T_max`` except the
report step; the report step weighs ``report_weight`` times a null step; steps from ``T_max`` on
carry no loss. Classes not yet introduced by a vocabulary curriculum are masked out.

The reference's forms are the defaults: the class is drawn uniformly first, then one of its images
(every class limited to as many images as the smallest has); the softmax reads sigmoid outputs, with
the outputs of classes not yet introduced multiplied by -1000; the loss is the mean over
batch x outputs x frames of the weighted log-likelihood. The alternatives (``class_sampling="image"``:
an image uniformly; ``loss="weighted"``: sum of weighted losses over total weight; a linear readout,
whose masked classes get -inf) are switches whose effect the book measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import math

import torch
from torch.nn import functional as F

from . import noise
from .data import ImageBank

NULL = 0
LOSSES = ("mean", "weighted")
CLASS_SAMPLINGS = ("class", "image")
NOISES = ("torch", "philox")  # pixel noise from torch's generator | from a Philox stream (memrnn.noise)


@dataclass(frozen=True)
class TaskSpec:
    n_frames: int = 20
    min_delay: int = 4
    report_weight: float = 20.0
    n_classes: int = 10
    loss: str = "mean"
    class_sampling: str = "class"
    readout: str = "sigmoid-softmax"
    noise: str = "torch"

    @property
    def n_outputs(self) -> int:
        return self.n_classes + 1

    @property
    def trained_delays(self) -> list[int]:
        """Every delay a full-length training trial can contain."""
        return list(range(self.min_delay, self.n_frames))

    def check(self, t_max: int, n_active: int) -> None:
        if not self.min_delay < t_max <= self.n_frames:
            raise ValueError(f"T_max={t_max} must be in ({self.min_delay}, {self.n_frames}]")
        if not 1 <= n_active <= self.n_classes:
            raise ValueError(f"number of active classes {n_active} must be in [1, {self.n_classes}]")


@dataclass
class Batch:
    frames: torch.Tensor       # (E, B, T, D) pixels
    trigger: torch.Tensor      # (E, B, T) 0/1
    targets: torch.Tensor      # (E, B, T) int64, 0 = null, k+1 = class k
    weights: torch.Tensor      # (E, B, T) loss weight per step
    labels: torch.Tensor       # (E, B) image class
    stimulus_time: torch.Tensor  # (E, B)
    report_time: torch.Tensor    # (E, B)
    n_active: int              # classes 0..n_active-1 are in play
    spec: TaskSpec
    inputs: torch.Tensor | None = None  # the fast path's (E, T x B, D + 2) projection matrix, frames its view


class TrialSampler:
    """Draws training batches on the bank's device.

    With one generator per ensemble member, member k's trials depend on its own generator only (so
    it equals the network trained alone); with a single generator, all members' trials are drawn
    in one vectorised call (the fast path on GPUs, where E small draws cost E kernel launches)."""

    def __init__(self, bank: ImageBank, spec: TaskSpec):
        self.bank, self.spec = bank, spec
        if spec.class_sampling not in CLASS_SAMPLINGS:
            raise ValueError(f"class_sampling={spec.class_sampling!r}; choose one of {CLASS_SAMPLINGS}")
        if spec.noise not in NOISES:
            raise ValueError(f"noise={spec.noise!r}; choose one of {NOISES}")
        order = torch.argsort(bank.train_labels.cpu(), stable=True).to(bank.train_labels.device)
        self.images = bank.train_images[order]
        self.labels = bank.train_labels[order]
        # images of classes 0..n-1 form a prefix of the sorted bank
        counts = torch.bincount(bank.train_labels.cpu(), minlength=spec.n_classes)
        self.prefix = torch.cumsum(counts, 0).tolist()
        self.class_start = (torch.cumsum(counts, 0) - counts).to(bank.train_labels.device)
        self.per_class = int(counts.min())  # the reference balances classes to the smallest

    def sample(self, generators: list[torch.Generator], batch_size: int, t_max: int, n_active: int,
               n_members: int | None = None) -> Batch:
        """A batch (E, B, ...): E = len(generators), or ``n_members`` from a single generator."""
        self.spec.check(t_max, n_active)
        if n_members is not None and len(generators) == 1:
            return Batch(*self._draw(generators[0], (n_members, batch_size), t_max, n_active), n_active=n_active,
                         spec=self.spec)
        parts = [self._draw(g, (batch_size,), t_max, n_active) for g in generators]
        return Batch(*[torch.stack(p) for p in zip(*parts)], n_active=n_active, spec=self.spec)

    def sample_time_major(self, generators: list[torch.Generator], batch_size: int, t_max: int,
                          n_active: int, projection: bool = False) -> Batch:
        """A batch of ``T_max`` frames, one generator per member, for the CPU fast path: the trials and the
        noise the eager sampler draws from the same generators (``spec.noise``: torch's, or a Philox stream
        keyed by a further draw of each, members filled in parallel), cut at ``T_max``;
        ``frames.transpose(1, 2)`` is contiguous.

        With ``projection`` the pixels are drawn in bf16 straight into ``Batch.inputs``, the matrix
        (E, T_max x B, D + 2) of pixels, trigger and a constant 1 that the fused projection multiplies
        (``memrnn.fused``), and ``frames`` is a view of its pixel columns: no float32 frames are
        written and none copied (Philox noise; torch's is drawn in float32 and rounded into it)."""
        self.spec.check(t_max, n_active)
        bank, E, B, D = self.bank, len(generators), batch_size, self.bank.dim
        times, draws = [], []
        for g in generators:
            times.append(self._trial(g, (B,), t_max, n_active))
            draws.append(noise.key(g) if self.spec.noise == "philox" else self._torch_noise(g, (B,))[:, :t_max])
        t_s, t_r, index = (torch.stack(x) for x in zip(*times))
        trigger, *labelled = self._labelled(t_s, t_r, index, t_max, t_max)
        if projection:
            inputs = torch.empty(E, t_max * B, D + 2, dtype=torch.bfloat16)
            pixels = inputs[..., :D]
        else:
            inputs, pixels = None, torch.empty(E, t_max * B, D)
        if self.spec.noise == "philox":
            noise.normal_(pixels, draws, bank.noise_mean, bank.noise_std)
        else:
            pixels.view(E, t_max, B, D).copy_(torch.stack(draws).transpose(1, 2))
        if projection:  # after the noise, whose rows are then in cache: first, these columns took 1 ms of page faults
            inputs[..., D] = trigger.transpose(1, 2).reshape(E, -1)
            inputs[..., D + 1] = 1
        rows = (torch.arange(E)[:, None] * t_max + t_s) * B + torch.arange(B)  # each stimulus frame
        images = (self.images_bf16 if projection else self.images).index_select(0, index.flatten())
        pixels.reshape(-1, D).index_copy_(0, rows.flatten(), images)
        return Batch(pixels.view(E, t_max, B, D).transpose(1, 2), trigger, *labelled, n_active=n_active,
                     spec=self.spec, inputs=inputs)

    @cached_property
    def images_bf16(self) -> torch.Tensor:
        """The sorted bank in bf16, as the fast path's projection matrix holds its images."""
        return self.images.to(torch.bfloat16)

    def _trial(self, g: torch.Generator, shape: tuple[int, ...], t_max: int, n_active: int):
        """Stimulus times, report times and bank indices (sorted bank) of trials of the given shape."""
        delta, device = self.spec.min_delay, self.images.device
        t_s = torch.randint(0, t_max - delta, shape, generator=g, device=device)
        span = t_max - t_s - delta  # number of allowed report times, >= 1
        t_r = t_s + delta + (torch.rand(shape, generator=g, device=device) * span).long()
        if self.spec.class_sampling == "class":
            label = torch.randint(0, n_active, shape, generator=g, device=device)
            index = self.class_start[label] + torch.randint(0, self.per_class, shape, generator=g, device=device)
        else:
            index = torch.randint(0, self.prefix[n_active - 1], shape, generator=g, device=device)
        return t_s, t_r, index

    def _labelled(self, t_s, t_r, index, t_max: int, n_frames: int):
        """Trigger, targets, weights, labels and the two times of trials over ``n_frames`` frames."""
        steps = torch.arange(n_frames, device=self.images.device)
        report = steps == t_r[..., None]
        labels = self.labels[index]
        targets = torch.where(report, labels[..., None] + 1, NULL)
        weights = (steps < t_max).float() + (self.spec.report_weight - 1) * report.float()
        return report.float(), targets, weights, labels, t_s, t_r

    def _draw(self, g: torch.Generator, shape: tuple[int, ...], t_max: int, n_active: int):
        """Trials of the given shape (one member's, or all members' for a 2-d ``shape``) over ``n_frames``."""
        T = self.spec.n_frames
        t_s, t_r, index = self._trial(g, shape, t_max, n_active)
        if self.spec.noise == "philox":
            frames = self._philox_noise(noise.key(g), shape)
        else:
            frames = self._torch_noise(g, shape)
        stimulus = (torch.arange(T, device=frames.device) == t_s[..., None]).unsqueeze(-1)
        frames = torch.where(stimulus, self.images[index].unsqueeze(-2), frames)
        return frames, *self._labelled(t_s, t_r, index, t_max, T)

    def _torch_noise(self, g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
        """Pixel noise (*shape, n_frames, D) from torch's generator."""
        frames = torch.randn(*shape, self.spec.n_frames, self.bank.dim, generator=g, device=self.images.device)
        return frames * self.bank.noise_std + self.bank.noise_mean

    def _philox_noise(self, key: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Pixel noise (*shape, n_frames, D) from the Philox stream ``key``, filled time-major as the fast path
        fills it (frame t of trial b at row t B + b), so that its first T_max frames are the fast path's."""
        *lead, B = shape
        frames = torch.empty(*lead, self.spec.n_frames, B, self.bank.dim)
        noise.normal_(frames, key, self.bank.noise_mean, self.bank.noise_std)
        return frames.transpose(-3, -2).to(self.images.device)


def mask_inactive(logits: torch.Tensor, n_active: int, readout: str = "sigmoid-softmax") -> torch.Tensor:
    """Take classes not yet introduced out of the softmax (null stays): the reference multiplies their
    sigmoid outputs by -1000; linear logits are set to -inf."""
    if n_active + 1 >= logits.shape[-1]:
        return logits
    inactive = torch.arange(logits.shape[-1], device=logits.device) > n_active
    if readout == "sigmoid-softmax":
        return logits * torch.where(inactive, -1000.0, 1.0).to(logits.dtype)
    return logits.masked_fill(inactive, float("-inf"))


def trial_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Weighted cross-entropy per member (E,): the reference's mean over batch x outputs x frames
    (``loss="mean"``), or the sum of weighted step losses over the total weight (``"weighted"``)."""
    spec = batch.spec
    logits = mask_inactive(logits, batch.n_active, spec.readout)
    per_step = F.cross_entropy(logits.flatten(0, 2), batch.targets.flatten(), reduction="none")
    per_step = per_step.reshape(batch.targets.shape) * batch.weights
    if spec.loss == "mean":  # over all n_frames, also when frames from T_max on were never drawn
        return per_step.sum((1, 2)) / (batch.targets.shape[1] * spec.n_frames * logits.shape[-1])
    return per_step.sum((1, 2)) / batch.weights.sum((1, 2))


def report_accuracy(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Fraction of trials whose report-step output is the right class, per member (E,)."""
    logits = mask_inactive(logits, batch.n_active, batch.spec.readout)
    index = batch.report_time[:, :, None, None].expand(-1, -1, 1, logits.shape[-1])
    at_report = logits.gather(2, index).squeeze(2)
    return (at_report.argmax(-1) == batch.labels + 1).float().mean(1)


@dataclass(frozen=True)
class BlindOptimum:
    """The best a network that ignores image and trigger can do with one output distribution for every
    frame: ``wanted`` p(null) (its weighted share of the targets), the readout's range of p(null), the
    p(null) it settles on and that loss."""
    t_max: int
    n_active: int
    wanted: float
    lowest: float
    highest: float
    settled: float
    loss: float

    @property
    def inside(self) -> bool:
        """Whether the wanted p(null) is reachable: otherwise the optimum is the readout's corner."""
        return self.lowest <= self.wanted <= self.highest


def blind_optimum(spec: TaskSpec, t_max: int, n_active: int) -> BlindOptimum:
    """Per trial a blind network meets T_max - 1 null targets (weight 1) and one report (weight
    ``report_weight``, its class uniform over the active ones), so its best constant p(null) is
    (T_max - 1) / (T_max - 1 + report_weight). Sigmoid outputs read by a softmax over the null and the
    n active outputs (masked ones vanish) confine p(null) to [1 / (1 + n e), e / (e + n)]; the loss is
    convex in p, so the optimum is the wanted value clipped to that range. Loss in the reference's
    form: the weighted log-likelihood averaged over n_frames x outputs."""
    spec.check(t_max, n_active)
    nulls, report = t_max - 1, spec.report_weight
    wanted = nulls / (nulls + report)
    if spec.readout == "sigmoid-softmax":
        lowest, highest = 1 / (1 + n_active * math.e), math.e / (math.e + n_active)
    else:
        lowest, highest = 0.0, 1.0
    settled = min(max(wanted, lowest), highest)
    total = -nulls * math.log(settled) - report * math.log((1 - settled) / n_active)
    divisor = spec.n_frames * spec.n_outputs if spec.loss == "mean" else nulls + report
    return BlindOptimum(t_max, n_active, wanted, lowest, highest, settled, total / divisor)
