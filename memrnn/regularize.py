"""Controlling memory: fine-tune a trained run with a penalty on hidden-state speed.

The reference fine-tunes a trained network with ``loss = CE + lam * sum_k sum_j ||F(p_k, xi_kj) - p_k||^2``
(a sum over anchors and noise frames, not a mean) where the anchors p_k are the slow points (mode
``slowpoints``) or the class centroids (``centermass``), each evaluated with ``n_noise`` fresh
pixel-noise frames xi every step, and compares with the same fine-tuning at lam = 0 (``control``).
LSTM speed is measured on (h, tanh c), as the finder's reference metric. Beyond the reference: anchors
can be re-found every ``relocate`` steps as the weights move, and ``tar`` (temporal activation
regularisation, ``lam * mean_t ||h_t - h_{t-1}||^2`` along the training trajectories) asks whether
targeting the memories matters.

Fine-tuning has two forms (the run's ``finetune`` field): ``reference`` starts a fresh Adam at the
parent's *initial* learning rate, as the reference does (5,000 steps after 140,000: the configuration's
``finetune_fraction`` of training); ``continue`` carries on the parent's Adam state at its final
learning rate, so that ``control`` is exactly plain continued training. Both continue the parent's data
streams on the full task. The result is a new run directory next to the parent, with the same files.
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

from . import store
from .adam import make_adam
from .presets import FINETUNE_FORMS, MAX_STEPS
from .slowpoints import FINDER_VERSION, analyse_run, class_centroids, find_slow_points, load_results, speed_coordinates
from .stats import mean_ci
from .train import Trainer, check_resources

MODES = ("control", "slowpoints", "centermass", "tar")
ADAM_EPS = 1e-8  # Adam's default epsilon, PyTorch's and TensorFlow's
FINETUNE_FILE = "finetune.json"
REGULARIZATION_FILE = "regularization.json"  # a parent's comparison of its fine-tunes (memrnn regularize)


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
    form: str = "reference"  # fresh Adam at the initial lr | "continue": the parent's Adam at its final lr

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.form not in FINETUNE_FORMS:
            raise ValueError(f"unknown fine-tuning form {self.form!r}; choose one of {FINETUNE_FORMS}")
        if self.steps < 1 or self.lam < 0 or self.relocate < 0 or self.n_noise < 1:
            raise ValueError("need steps >= 1, lam >= 0, relocate >= 0 and n_noise >= 1")

    @property
    def name(self) -> str:
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v != ""}  # unset: not hashed
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.parent}--{self.mode}-{digest}"


class SpeedPenalty:
    """lam * sum over anchors and noise frames of ||phi(F(p, xi)) - phi(p)||^2, per member (E,)."""

    def __init__(self, anchors: torch.Tensor, lam: float, n_noise: int, bank, seed: int, relocate_fn=None,
                 relocate: int = 0, first_step: int = 0, metric: str = "reference"):
        self.anchors, self.lam, self.n_noise, self.bank, self.metric = anchors, lam, n_noise, bank, metric
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
        return self.lam * speed_penalty(model, self.anchors, self.bank, self.n_noise, self.generator, self.metric)


def speed_penalty(model, anchors: torch.Tensor, bank, n_noise: int, generator: torch.Generator,
                  metric: str = "reference") -> torch.Tensor:
    """sum_k sum_noise ||phi(F(p_k, xi)) - phi(p_k)||^2 per member (E,), xi fresh pixel-noise frames and
    phi the speed coordinates (LSTM, reference metric: (h, tanh c)). The anchors are fixed targets:
    gradients reach the weights only."""
    E, K, S = anchors.shape
    points = anchors.detach().repeat_interleave(n_noise, dim=1)
    noise = torch.randn(E, K * n_noise, bank.dim, generator=generator, device=anchors.device,
                        dtype=model.weight_hh.dtype)
    noise = noise * bank.noise_std + bank.noise_mean
    following = model.step(points, noise, torch.zeros(E, K * n_noise, device=anchors.device))
    return (speed_coordinates(model, following, metric) - speed_coordinates(model, points, metric)).square().sum((1, 2))


def tar_penalty(lam: float):
    """Temporal activation regularisation along the training batch's hidden trajectories."""
    def penalty(step, model, hidden):
        return lam * (hidden[:, :, 1:] - hidden[:, :, :-1]).square().sum(-1).mean((1, 2))
    return penalty


def finetune(parent_dir: Path, mode: str, lam: float | None = None, steps: int | None = None,
             relocate: int = 0, n_noise: int = 10, seed: int = 0, form: str | None = None,
             progress: bool = True, search: str | None = None, centroids: str | None = None,
             metric: str | None = None) -> Path:
    """Fine-tune a trained run; returns the new run directory (reused if already complete).

    ``steps`` defaults to the parent's ``finetune_steps``, ``form`` to its ``finetune`` field, and the
    anchors' analysis (``search``, ``centroids``, speed ``metric``) to the parent's configuration."""
    parent_dir = Path(parent_dir)
    bad_lam = lam is not None and not (math.isfinite(lam) and lam >= 0)
    if mode not in MODES or bad_lam or (steps is not None and not 1 <= steps <= MAX_STEPS) or relocate < 0:
        raise ValueError(f"need mode in {MODES} (got {mode!r}), finite lam >= 0 (got {lam}), steps from 1 to "
                         f"{MAX_STEPS} (got {steps}) and relocate >= 0 (got {relocate})")
    store.trained_step(parent_dir)
    config = store.read_config(parent_dir)
    # its checkpoints' memory and disk, judged as a training of that many steps is
    check_resources(config, parent_dir.parent, steps or config.finetune_steps)
    lam = 0.0 if mode == "control" else default_lam(config.dataset) if lam is None else lam
    analysis = (search or config.search, centroids or config.centroids, metric or config.speed_metric)
    anchors = "-".join((*analysis, f"v{FINDER_VERSION}")) if mode in ("slowpoints", "centermass") else ""
    spec = Finetune(parent_dir.name, mode, lam, steps or config.finetune_steps, relocate, n_noise, seed, anchors,
                    form or config.finetune)
    run_dir = parent_dir.parent / spec.name
    with store.run_lock(run_dir):
        if "train" in store.read_summary(run_dir):
            store.trained_step(run_dir)  # reused only if its configuration and final checkpoint verify
            return run_dir
        return _finetune_locked(spec, config, parent_dir, run_dir, analysis, progress)


def _finetune_locked(spec: Finetune, config, parent_dir: Path, run_dir: Path, analysis: tuple, progress: bool) -> Path:
    trainer = Trainer.build(config)
    parent_end, _, _ = trainer.resume(parent_dir)  # begin from the parent's final state
    if spec.form == "reference":  # a fresh Adam, as a new optimiser in the reference's fine-tuning script
        trainer.optimizer = make_adam(fresh_adam_groups(trainer.model), config.adam, config.lr,
                                      fused=config.fast or None)
    penalty = _penalty(spec, parent_dir, trainer, parent_end, analysis)
    start, metrics, tensors = trainer.resume(run_dir)
    if start == 0:
        start = parent_end
    elif hasattr(penalty, "load"):
        penalty.load({k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("penalty/")})
    store.write_json(store.run_file(run_dir, store.CONFIG_FILE), vars(config))
    store.write_json(store.run_file(run_dir, FINETUNE_FILE), dataclasses.asdict(spec))
    lr = config.lr if spec.form == "reference" else config.lr_at(config.steps - 1)
    full_task = (config.n_frames, 10)
    trainer.fit(run_dir, start, parent_end + spec.steps, metrics, lambda step: full_task, lambda step: lr,
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


def fresh_adam_groups(model):
    """The parameters of the reference's fresh Adam. Its fine-tuning script loads the CNN's effective conv
    weights w = v / d as plain variables, so Adam steps w by about lr there, not lr / d as in training; on
    v = d w the same steps are Adam at lr * d with eps / d (``lr_scale``, which ``train.set_lr`` applies)."""
    divisors = model.divisors
    if not divisors:
        return model.parameters()
    return [{"params": [p], "lr_scale": divisors.get(name, 1.0), "eps": ADAM_EPS / divisors.get(name, 1.0)}
            for name, p in model.named_parameters()]


def _penalty(spec: Finetune, parent_dir: Path, trainer: Trainer, first_step: int, analysis: tuple):
    if spec.mode == "control" or spec.lam == 0:
        return None
    if spec.mode == "tar":
        return tar_penalty(spec.lam)
    search, centroids, metric = analysis
    found = analyse_run(parent_dir, search=search, centroids=centroids, metric=metric)
    results = load_results(parent_dir, found["file"])
    device = trainer.model.weight_hh.device
    anchors = (results["points"] if spec.mode == "slowpoints" else results["centroids"]).to(device)
    if spec.mode == "slowpoints":
        def relocate(model, anchors):
            return find_slow_points(model, trainer.bank, anchors, "lm", max_iter=50, metric=metric).points
    else:
        def relocate(model, anchors):
            return class_centroids(model, trainer.bank, centroids).states
    return SpeedPenalty(anchors, spec.lam, spec.n_noise, trainer.bank, spec.seed, relocate, spec.relocate, first_step,
                        metric)


def compare(parent_dir: Path, children: list[Path], min_delay: int = 100) -> list[dict]:
    """Per fine-tuning mode: long-delay and trained-delay accuracy before and after, and the mean
    change across seeds with a 95% t-interval (paired by seed), also against ``control``."""
    before = _accuracies(parent_dir, min_delay)
    modes = {store.read_summary(c)["finetune"]["mode"]: c for c in children}
    control = _accuracies(modes["control"], min_delay) if "control" in modes else None
    rows = []
    for child in children:
        summary = store.read_summary(child)
        after = _accuracies(child, min_delay)
        row = {"run": summary["run"], "mode": summary["finetune"]["mode"], "lam": summary["finetune"]["lam"],
               "relocate": summary["finetune"]["relocate"]}
        for key in ("long", "trained"):
            diff = after[key] - before[key]
            row[key] = {"before": float(before[key].mean()), "after": float(after[key].mean()),
                        "after_per_seed": after[key].tolist(),
                        "change": float(diff.mean()), "ci95": _mean_ci(diff),
                        "per_seed": diff.tolist()}
            if control is not None:
                vs = after[key] - control[key]
                row[key]["vs_control"] = {"change": float(vs.mean()), "ci95": _mean_ci(vs), "per_seed": vs.tolist()}
        rows.append(row)
    return rows


def _mean_ci(diff: np.ndarray) -> list[float]:
    """95% t-interval of the mean of paired differences (one per seed)."""
    if len(diff) < 2 or np.ptp(diff) == 0:
        return [float(diff.mean())] * 2
    _, low, high = mean_ci(diff)
    return [low, high]


def _accuracies(run_dir: Path, min_delay: int) -> dict[str, np.ndarray]:
    summary = store.read_summary(run_dir)
    if "extrapolation" not in summary:
        raise ValueError(f"{run_dir} has no extrapolation results: run `memrnn evaluate {run_dir}` first")
    ex = summary["extrapolation"]
    long = [j for j, d in enumerate(ex["delays"]) if d >= min_delay]
    if not long:
        raise ValueError(f"{run_dir}: no evaluated delay >= {min_delay} (have {ex['delays']})")
    return {"long": np.asarray(ex["overall"])[:, long].mean(1),
            "trained": np.asarray(summary["train"]["trained_delay_accuracy"])}
