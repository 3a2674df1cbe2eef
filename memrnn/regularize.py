"""Controlling memory: fine-tune a trained run with a penalty on hidden-state speed.

The reference fine-tunes a trained network with ``loss = CE + lam * sum_k ||F(p_k, xi) - p_k||^2``
where the anchors p_k are the slow points (mode ``slowpoints``) or the class centroids
(``centermass``), each evaluated with ``n_noise`` fresh pixel-noise frames xi every step, and
compares with the same fine-tuning at lam = 0 (``control``). Beyond the reference: anchors can be
re-found every ``relocate`` steps as the weights move, and ``tar`` (temporal activation
regularisation, ``lam * mean_t ||h_t - h_{t-1}||^2`` along the training trajectories) asks
whether targeting the memories matters.

Fine-tuning continues the parent's training state (weights, Adam moments, data streams) on the
full task at the parent's final learning rate, so ``control`` is exactly plain continued
training. The result is a new run directory next to the parent, with the same files.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from . import store
from .slowpoints import FINDER_VERSION, analyse_run, class_centroids, find_slow_points, load_results
from .train import Trainer

MODES = ("control", "slowpoints", "centermass", "tar")
FINETUNE_FILE = "finetune.json"
DEFAULT_STEPS = {"smoke": 20, "cpu": 500, "paper": 5_000}


def default_lam(dataset: str) -> float:
    """The reference's strengths: 1e-2 for CIFAR-10, 1e-3 for MNIST-like data."""
    return 1e-2 if dataset == "cifar10" else 1e-3


@dataclass(frozen=True)
class Finetune:
    parent: str          # run directory name of the trained network
    mode: str
    lam: float
    steps: int
    relocate: int = 0    # re-find the anchors every this many steps (0: fixed, as the reference)
    n_noise: int = 10    # noise frames per anchor per step
    seed: int = 0        # seed of the penalty's noise frames
    anchors: str = ""    # which slow-point search gave the anchors (mode slowpoints only)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.steps < 1 or self.lam < 0 or self.relocate < 0 or self.n_noise < 1:
            raise ValueError("need steps >= 1, lam >= 0, relocate >= 0 and n_noise >= 1")

    @property
    def name(self) -> str:
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v != ""}  # unset: not hashed
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.parent}--{self.mode}-{digest}"


class SpeedPenalty:
    """lam * sum over anchors and noise frames of ||F(p, xi) - p||^2, per member (E,)."""

    def __init__(self, anchors: torch.Tensor, lam: float, n_noise: int, bank, seed: int, relocate_fn=None,
                 relocate: int = 0, first_step: int = 0):
        self.anchors, self.lam, self.n_noise, self.bank = anchors, lam, n_noise, bank
        self.generator = torch.Generator(anchors.device).manual_seed(seed)
        self.relocate_fn, self.relocate, self.first_step = relocate_fn, relocate, first_step

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold to resume the penalty exactly."""
        return {"anchors": self.anchors, "rng": self.generator.get_state()}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.anchors = tensors["anchors"].to(self.anchors.device)
        self.generator.set_state(tensors["rng"])

    def __call__(self, step: int, model, hidden=None) -> torch.Tensor:
        done = step - self.first_step
        if self.relocate and done and done % self.relocate == 0:
            self.anchors = self.relocate_fn(model, self.anchors)
        return self.lam * speed_penalty(model, self.anchors, self.bank, self.n_noise, self.generator)


def speed_penalty(model, anchors: torch.Tensor, bank, n_noise: int, generator: torch.Generator) -> torch.Tensor:
    """sum_k sum_noise ||F(p_k, xi) - p_k||^2 per member (E,), xi fresh pixel-noise frames.
    The anchors are fixed targets: gradients reach the weights only."""
    E, K, S = anchors.shape
    points = anchors.detach().repeat_interleave(n_noise, dim=1)
    noise = torch.randn(E, K * n_noise, bank.dim, generator=generator, device=anchors.device)
    noise = noise * bank.noise_std + bank.noise_mean
    following = model.step(points, noise, torch.zeros(E, K * n_noise, device=anchors.device))
    return (following - points).square().sum((1, 2))


def tar_penalty(lam: float):
    """Temporal activation regularisation along the training batch's hidden trajectories."""
    def penalty(step, model, hidden):
        return lam * (hidden[:, :, 1:] - hidden[:, :, :-1]).square().sum(-1).mean((1, 2))
    return penalty


def finetune(parent_dir: Path, mode: str, lam: float | None = None, steps: int | None = None,
             relocate: int = 0, n_noise: int = 10, seed: int = 0, progress: bool = True) -> Path:
    """Fine-tune a trained run; returns the new run directory (reused if already complete)."""
    parent_dir = Path(parent_dir)
    if mode not in MODES or (lam is not None and not (math.isfinite(lam) and lam >= 0)) or (steps is not None and steps < 1) or relocate < 0:
        raise ValueError(f"need mode in {MODES} (got {mode!r}), finite lam >= 0 (got {lam}), steps >= 1 "
                         f"(got {steps}) and relocate >= 0 (got {relocate})")
    store.trained_step(parent_dir)
    config = store.read_config(parent_dir)
    lam = 0.0 if mode == "control" else default_lam(config.dataset) if lam is None else lam
    anchors = f"finder-v{FINDER_VERSION}" if mode == "slowpoints" else ""
    spec = Finetune(parent_dir.name, mode, lam,
                    steps or DEFAULT_STEPS.get(config.preset, 500), relocate, n_noise, seed, anchors)
    run_dir = parent_dir.parent / spec.name
    summary_path = run_dir / store.SUMMARY_FILE
    if summary_path.exists() and "train" in store.read_json(summary_path):
        return run_dir
    trainer = Trainer.build(config)
    parent_end, _, _ = trainer.resume(parent_dir)  # begin from the parent's final state
    penalty = _penalty(spec, parent_dir, trainer, parent_end)
    start, metrics, tensors = trainer.resume(run_dir)
    if start == 0:
        start = parent_end
    elif hasattr(penalty, "load"):
        penalty.load({k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("penalty/")})
    store.write_json(run_dir / store.CONFIG_FILE, vars(config))
    store.write_json(run_dir / FINETUNE_FILE, dataclasses.asdict(spec))
    final_lr = config.lr_at(config.steps - 1)
    full_task = (config.n_frames, 10)
    trainer.fit(run_dir, start, parent_end + spec.steps, metrics, lambda step: full_task, lambda step: final_lr,
                penalty, progress=progress)
    store.update_summary(run_dir, run=run_dir.name, config=vars(config), parent=parent_dir.name,
                         finetune=dataclasses.asdict(spec), train={
                             "steps": parent_end + spec.steps, "member_seeds": config.member_seeds,
                             "final_loss": metrics[-1]["loss"], "final_batch_accuracy": metrics[-1]["accuracy"],
                             "trained_delays": list(range(config.min_delay, config.n_frames)),
                             "eval_trials": config.eval_trials,
                             "trained_delay_accuracy": trainer.trained_delay_accuracy(),
                             "curriculum_events": []})
    return run_dir


def _penalty(spec: Finetune, parent_dir: Path, trainer: Trainer, first_step: int):
    if spec.mode == "control" or spec.lam == 0:
        return None
    if spec.mode == "tar":
        return tar_penalty(spec.lam)
    analyse_run(parent_dir)
    results = load_results(parent_dir)
    device = trainer.model.weight_hh.device
    anchors = (results["points"] if spec.mode == "slowpoints" else results["centroids"]).to(device)
    if spec.mode == "slowpoints":
        def relocate(model, anchors):
            return find_slow_points(model, trainer.bank, anchors, max_iter=50).points
    else:
        def relocate(model, anchors):
            return class_centroids(model, trainer.bank).states
    return SpeedPenalty(anchors, spec.lam, spec.n_noise, trainer.bank, spec.seed, relocate, spec.relocate, first_step)


def compare(parent_dir: Path, children: list[Path], min_delay: int = 100, n_resamples: int = 2000) -> list[dict]:
    """Per fine-tuning mode: long-delay and trained-delay accuracy before and after, and the mean
    change across seeds with a 95% bootstrap CI (paired by seed)."""
    before = _accuracies(parent_dir, min_delay)
    modes = {store.read_json(Path(c) / store.SUMMARY_FILE)["finetune"]["mode"]: c for c in children}
    control = _accuracies(modes["control"], min_delay) if "control" in modes else None
    rows = []
    for child in children:
        summary = store.read_json(Path(child) / store.SUMMARY_FILE)
        after = _accuracies(child, min_delay)
        row = {"run": summary["run"], "mode": summary["finetune"]["mode"], "lam": summary["finetune"]["lam"],
               "relocate": summary["finetune"]["relocate"]}
        for key in ("long", "trained"):
            diff = after[key] - before[key]
            row[key] = {"before": float(before[key].mean()), "after": float(after[key].mean()),
                        "change": float(diff.mean()), "ci95": _mean_ci(diff, n_resamples)}
            if control is not None:
                vs = after[key] - control[key]
                row[key]["vs_control"] = {"change": float(vs.mean()), "ci95": _mean_ci(vs, n_resamples)}
        rows.append(row)
    return rows


def _mean_ci(diff: np.ndarray, n_resamples: int) -> list[float]:
    """95% bootstrap CI of the mean of paired differences (one per seed)."""
    if len(diff) < 2 or np.ptp(diff) == 0:
        return [float(diff.mean())] * 2
    ci = stats.bootstrap((diff,), np.mean, n_resamples=n_resamples, method="percentile",
                         random_state=np.random.default_rng(0)).confidence_interval
    return [float(ci[0]), float(ci[1])]


def _accuracies(run_dir: Path, min_delay: int) -> dict[str, np.ndarray]:
    summary = store.read_json(Path(run_dir) / store.SUMMARY_FILE)
    if "extrapolation" not in summary:
        raise ValueError(f"{run_dir} has no extrapolation results: run `memrnn evaluate {run_dir}` first")
    ex = summary["extrapolation"]
    long = [j for j, d in enumerate(ex["delays"]) if d >= min_delay]
    if not long:
        raise ValueError(f"{run_dir}: no evaluated delay >= {min_delay} (have {ex['delays']})")
    return {"long": np.asarray(ex["overall"])[:, long].mean(1),
            "trained": np.asarray(summary["train"]["trained_delay_accuracy"])}
