"""Run configurations: one frozen dataclass, three presets, any field overridable.

- ``smoke``: a full train + evaluate in seconds on a CPU (tests, CI, notebook checks).
- ``cpu``: the CPU edition of the book, on two cores: 10 networks per condition, trained on the fast
  path (bf16 arithmetic, Philox noise; equivalent to float32 by ``memrnn.equivalence``) for the length
  that ``memrnn.curve``'s rule picked (12,000 steps), on mnist-5k and fashion-mnist.

Every preset uses the reference's model form (cell, readout, initialisation, CIFAR-10 CNN, loss, class
sampling, slow-point search, centroids, LSTM speed, fine-tuning); presets differ only in scale.
- ``gpu``: the paper's network shape (200 units, batch 128, 10 seeds; CIFAR-10: 512 units, batch 64,
  the CNN) on a shortened schedule, Adam at lr 1e-3 for 8,000 steps, for one GPU in minutes; the
  curricula keep their shape because they are fractions of training.
- ``paper``: the reference hyperparameters (Adam lr 1e-5, 140k steps, batch 128, 200 units, lr / 10
  at 120k for MNIST-like data; lr 1e-4, 300k steps, batch 64, 512 units, / 10 at 280k for
  CIFAR-10). Meant for a GPU.

Fine-tuning is the reference's fraction of training at every preset: 5,000 steps after 140,000 (MNIST),
after 300,000 for CIFAR-10.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .adam import ADAMS
from .data import DATASETS
from .models import ARCHS, CELLS, CNN_FORMS, INITS, READOUTS
from .protocols import PROTOCOLS
from .task import CLASS_SAMPLINGS, LOSSES, NOISES

DEVICES = ("auto", "cpu", "cuda")
SEARCHES = ("reference", "lm")             # Adam as the reference runs it | Levenberg-Marquardt
SPEED_METRICS = ("reference", "state")     # LSTM speed on (h, tanh c) | on the raw state (h, c)
CENTROID_PROTOCOLS = ("reference", "heldout")
FINETUNE_FORMS = ("reference", "continue")  # initial lr, fresh Adam | parent's final lr, Adam carried on
# The model form: each field's first choice is the reference's (Haviv et al.'s code), the rest ours.
MODEL_FORM = {"cell": CELLS, "readout": READOUTS, "init": INITS, "loss": LOSSES,
              "class_sampling": CLASS_SAMPLINGS, "adam": ADAMS, "speed_metric": SPEED_METRICS, "search": SEARCHES,
              "centroids": CENTROID_PROTOCOLS, "finetune": FINETUNE_FORMS}
# The CIFAR-10 CNN's form, a model-form field of the datasets with a CNN only: apart from MODEL_FORM, whose every
# field the book's ablation flips (on MNIST a flip of it would change nothing), but validated and labelled alike.
CNN_FORM = {"cnn": CNN_FORMS}
CNN_DATASETS = ("cifar10",)
# Every field with a fixed set of values (`memrnn config` lists them; model-form fields: the reference's first)
CHOICES = {"dataset": DATASETS, "arch": ARCHS, "protocol": PROTOCOLS, "device": DEVICES, "noise": NOISES,
           **MODEL_FORM, **CNN_FORM}


# Bounds far beyond any useful run, so a typo (1e30 steps, a NaN fraction) fails here with one line rather
# than as an overflow deep inside training; train.check_resources then judges this machine's memory and disk.
_COUNTS = {"seeds": 10_000, "hidden_size": 1_000_000, "batch_size": 10_000_000, "steps": 10**9,
           "checkpoint_every": 10**9, "log_every": 10**9, "eval_trials": 10**8, "search_iterations": 10**9}
_REALS = {"lr": (0, 10), "lr_drop_at": (0, 1), "lr_drop_factor": (0, 1e6), "report_weight": (0, 1e6),
          "finetune_fraction": (0, 1)}  # (low, high]: low excluded
MAX_ITERATIONS = _COUNTS["search_iterations"]  # also the bound of a slow-point search or a trace asked for directly
MAX_STEPS = _COUNTS["steps"]  # also the bound of a fine-tuning
MAX_SEED = 2**32 - 1 - _COUNTS["seeds"]  # member seeds stay below 2**32 (NumPy's SeedSequence words)
MAX_BYTES = 2**50  # 1 PiB: the memory or checkpoint disk no machine has


@dataclass(frozen=True)
class Config:
    preset: str = "smoke"
    dataset: str = "synthetic"
    arch: str = "gru"
    protocol: str = "none"
    seeds: int = 2                 # ensemble members; member k has seed first_seed + k
    first_seed: int = 0
    hidden_size: int = 32
    batch_size: int = 16
    steps: int = 60
    lr: float = 3e-3
    lr_drop_at: float = 120 / 140  # fraction of training whose step (counted from 1) first takes the divided lr
    lr_drop_factor: float = 10.0
    n_frames: int = 20
    min_delay: int = 4
    report_weight: float = 20.0
    checkpoint_every: int = 20
    log_every: int = 10
    eval_trials: int = 200         # held-out trials per accuracy estimate
    fast: bool = False             # bf16 input projections, fused Adam; CPU: fused recurrence with C kernels
                                   # (memrnn.fused), trials cut at T_max, bf16 matmuls as float32 where the
                                   # CPU has no bf16 (memrnn.bf16); GPU: compiled, one data stream for all members
    noise: str = "torch"           # training batches' pixel noise: torch's generator | "philox": memrnn.noise's
                                   # Philox streams; either is the same on both paths, so float32 and fast
                                   # twins of one config see the same noise (the fast path's rounded to bf16)
    device: str = "auto"
    # the model form; first choice = the reference's (see MODEL_FORM)
    cell: str = "reference"             # one bias per gate, reset gate before U_h | "torch": torch.nn's cells
    readout: str = "sigmoid-softmax"    # sigmoid outputs read by the softmax | "linear" logits
    init: str = "reference"             # N(0,1)/sqrt(fan_in), biases 0.01 N(0,1) | "uniform": PyTorch's
    loss: str = "mean"                  # mean over batch x outputs x frames | "weighted": sum w CE / sum w
    class_sampling: str = "class"       # class uniform, then an image | "image": an image uniformly
    adam: str = "tf1"                   # TF1's Adam: eps meets the uncorrected sqrt(v) | "torch": PyTorch's
                                        # (memrnn.adam); training and fine-tuning
    cnn: str = "reference"              # CIFAR-10 CNN: conv variables truncated N(0,1) and 0.1, divided by
                                        # sqrt(c_in c_out) and sqrt(c_out) in the forward pass, leaky-ReLU 0.2
                                        # | "plain": conv weights as initialised by `init`, leaky-ReLU 0.01
    # analysis and fine-tuning (they do not change the trained weights)
    speed_metric: str = "reference"     # LSTM speed on (h, tanh c) | "state": on (h, c)
    search: str = "reference"           # Adam lr 1e-3 (/10 at 40%), h clipped to [-1, 1] | "lm"
    search_iterations: int = 100_000    # iterations of the reference search
    centroids: str = "reference"        # training images, 14 noise frames, one shared noise sequence: 100/class
                                        # at sigma/3 (CIFAR-10: 1,000/class at sigma) | "heldout": 1,000 test
                                        # trials, full sigma
    finetune: str = "reference"         # initial lr, fresh Adam | "continue": final lr, Adam state kept
    finetune_fraction: float = 5_000 / 140_000  # fine-tuning steps as a fraction of training steps (CIFAR-10:
                                                # 5,000 / 300,000, set by make_config)

    @property
    def member_seeds(self) -> list[int]:
        return [self.first_seed + k for k in range(self.seeds)]

    def __post_init__(self):
        kinds = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, kinds[f.type]) or (f.type != "bool" and isinstance(value, bool)):
                raise ValueError(f"{f.name}={value!r} is not allowed: expected {f.type}")
        for field, allowed in CHOICES.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field}={getattr(self, field)!r} is not allowed; choose one of {allowed}")
        for field, high in _COUNTS.items():
            if not 1 <= getattr(self, field) <= high:
                raise ValueError(f"{field} must be an integer between 1 and {high}, got {getattr(self, field)}")
        if not 0 <= self.first_seed <= MAX_SEED:
            raise ValueError(f"first_seed must be between 0 and {MAX_SEED}, got {self.first_seed}")
        for field, (low, high) in _REALS.items():
            value = getattr(self, field)
            if not (math.isfinite(value) and low < value <= high):
                raise ValueError(f"{field} must be a finite number in ({low:g}, {high:g}], got {value}")
        if self.lr_drop_factor < 1:
            raise ValueError(f"lr_drop_factor must be >= 1, got {self.lr_drop_factor}")
        if not 2 <= self.n_frames <= 10_000:
            raise ValueError(f"n_frames must be between 2 and 10000, got {self.n_frames}")
        if not 1 <= self.min_delay < self.n_frames:
            raise ValueError(f"min_delay must be between 1 and n_frames - 1 = {self.n_frames - 1}, got {self.min_delay}")
        if self.checkpoint_every % self.log_every:
            raise ValueError(f"checkpoint_every={self.checkpoint_every} must be a multiple of log_every={self.log_every}")
        memory, disk = estimate_bytes(self)
        if memory > MAX_BYTES or disk > MAX_BYTES:
            raise ValueError(f"this run needs about {memory / 2**30:.3g} GiB of memory and its checkpoints would take "
                             f"about {disk / 2**30:.3g} GiB of disk, more than any machine has: lower seeds, "
                             "hidden_size, batch_size or steps, or raise checkpoint_every")

    @property
    def finetune_steps(self) -> int:
        """The reference fine-tunes 5,000 steps after 140,000 (CIFAR-10: 300,000): the same fraction of this
        run's training."""
        return max(1, round(self.finetune_fraction * self.steps))

    @property
    def has_cnn(self) -> bool:
        return self.dataset in CNN_DATASETS

    @property
    def form_choices(self) -> dict[str, tuple[str, ...]]:
        """The model-form fields that apply to this run (the CNN's only with a CNN), each with its
        choices, the reference's first."""
        return {**MODEL_FORM, **(CNN_FORM if self.has_cnn else {})}

    @property
    def model_form(self) -> dict[str, str]:
        """Every model-form field that applies, and whether all of them are the reference's."""
        return {field: getattr(self, field) for field in self.form_choices}

    @property
    def is_reference_form(self) -> bool:
        return all(getattr(self, field) == choices[0] for field, choices in self.form_choices.items())

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (counted from 0). The reference counts from 1 and divides from
        step 120,000 of 140,000 on (CIFAR-10: 280,000 of 300,000), i.e. from our step 119,999."""
        return self.lr / self.lr_drop_factor if step + 1 >= self.lr_drop_at * self.steps else self.lr


# bytes per parameter held while training: weights, gradients and Adam's two moments (float32)
_TRAINING_COPIES = 4


def estimate_bytes(config: Config, steps: int | None = None) -> tuple[int, int]:
    """Rough (memory, disk) a run needs for ``steps`` (default its own) training steps: parameters with
    Adam's state, the unrolled activations, and every checkpoint kept. An estimate to refuse the
    impossible up front, not a budget."""
    E, H, B, T = config.seeds, config.hidden_size, config.batch_size, config.n_frames
    G = {"gru": 3, "lstm": 4}.get(config.arch, 1) * H
    conv = config.has_cnn
    features = 1024 if conv else 784
    params = E * (G * (features + 1 + H + 2) + 11 * (H + 1))
    if conv:
        params += E * (128 * 3 * 9 + 2 * 128 * 128 * 9 + 3 * 128 + 2048 * 2048 + 2048 + 2048 * 1024 + 1024)
    activations = 4 * E * B * T * (2 * G + 3 * 1024 * (8 if conv else 1))
    n_checkpoints = math.ceil((config.steps if steps is None else steps) / config.checkpoint_every)
    return 4 * _TRAINING_COPIES * params + 4 * activations, n_checkpoints * 4 * 3 * params


# Measured on two CPU cores, one worker per core: the cpu preset's main grid (4 conditions x 10 networks x
# 6,000 steps, 100 units, batch 32) trained in about 52 minutes per dataset, 0.013 s per network-step.
CPU_SECONDS_PER_NETWORK_STEP = 52 * 60 / (40 * 6000)


# The fast path on the same two cores with native bf16: 10 GRUs x 3,000 steps in 118 s against 340 s in float32
# (memrnn.equivalence's twins); a CPU without native bf16 gains less, so estimates from it are lower bounds.
CPU_FAST_SPEEDUP = 340 / 118


def cpu_seconds(configs) -> float:
    """Seconds to train ``configs`` on two CPU cores, scaled from the cpu preset's measured grid by the work
    per step (batch x units²), and by the fast path's measured speed-up for a fast configuration."""
    return CPU_SECONDS_PER_NETWORK_STEP * sum(c.seeds * c.steps * c.batch_size * c.hidden_size ** 2 / (32 * 100 ** 2)
                                              / (CPU_FAST_SPEEDUP if c.fast else 1) for c in configs)


_PRESETS: dict[str, dict] = {
    "smoke": dict(search_iterations=2_000),
    # search_iterations: the reference's 100,000 Adam iterations take minutes per run on two cores;
    # 20,000 (lr 1e-3 for 8,000, then 1e-4) still let every coordinate cross the region (-1, 1)
    # steps: the learning curve's rule (memrnn.curve, book/learning_curve.json; a test keeps the two equal)
    # fast, noise: the fast path trains it, its twins sharing Philox noise shown equivalent to float32 within
    # ±0.03 over 50 pairs (memrnn.equivalence, book/fast_equivalence.json); fast=false is the float32 reference
    "cpu": dict(dataset="mnist-5k", seeds=10, hidden_size=100, batch_size=32, steps=12000, lr=1e-3,
                checkpoint_every=250, log_every=50, eval_trials=1000, search_iterations=20_000, fast=True,
                noise="philox"),
    # search_iterations as at cpu: the analyses of 24 ensembles must fit a few minutes of one GPU
    "gpu": dict(dataset="mnist-5k", seeds=10, hidden_size=200, batch_size=128, steps=8000, lr=1e-3,
                checkpoint_every=500, log_every=100, eval_trials=2000, search_iterations=20_000),
    "paper": dict(dataset="mnist", seeds=10, hidden_size=200, batch_size=128, steps=140_000, lr=1e-5,
                  checkpoint_every=5_000, log_every=500, eval_trials=10_000),
}
# CIFAR-10 at every preset: the reference fine-tunes 5,000 steps after 300,000
_CIFAR_ALL = dict(finetune_fraction=5_000 / 300_000)
_CIFAR = {"gpu": dict(hidden_size=512, batch_size=64),
          "paper": dict(seeds=5, hidden_size=512, batch_size=64, steps=300_000, lr=1e-4, lr_drop_at=280 / 300,
                        checkpoint_every=10_000)}
PRESETS = tuple(_PRESETS)
# The datasets the claims C1-C4 are judged on at each preset (the first one is also the preset's own dataset,
# which the other chapters use)
BOOK_DATASETS = {"smoke": ("synthetic",), "cpu": ("mnist-5k", "fashion-mnist"), "gpu": ("mnist-5k",),
                 "paper": ("mnist",)}
# Chapter 08 ("Which choices matter?") retrains a condition per switch: at cpu it keeps a quarter of the main length and
# five networks, which its 8 retrained conditions need to fit the book's two-core budget (see its runtime note)
CHOICES_SCALE = {"cpu": dict(seeds=5, steps=3000)}


# The arithmetics an edition of the book can train on (the chapters' parameter ``arithmetic``), each with the
# configuration fields that make it: the fast path with its shared Philox noise, and the float32 reference
ARITHMETICS = {"fast": dict(fast=True, noise="philox"), "float32": dict(fast=False, noise="torch")}


def arithmetic(config: Config) -> str:
    """The arithmetic ``config`` trains on: its name in :data:`ARITHMETICS`, or its two fields when it is
    neither (a verdict's scope names it, so that two editions of the book are never taken for one)."""
    for name, fields in ARITHMETICS.items():
        if all(getattr(config, k) == v for k, v in fields.items()):
            return name
    return f"fast={config.fast}, noise={config.noise}"


def book_datasets(preset: str, datasets: str = "") -> list[str]:
    """The comma-separated ``datasets`` of a chapter parameter, or the preset's when empty."""
    if preset not in _PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    names = [d for d in datasets.split(",") if d] or list(BOOK_DATASETS[preset])
    unknown = [d for d in names if d not in DATASETS]
    if unknown or len(set(names)) < len(names):
        raise ValueError(f"datasets={datasets!r}: give distinct names from {DATASETS}, comma-separated")
    return names


def make_config(preset: str = "smoke", **overrides) -> Config:
    """The preset's configuration with ``overrides`` applied (None values are ignored)."""
    if preset not in _PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; allowed: {sorted(fields)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    values = dict(_PRESETS[preset], preset=preset)
    if overrides.get("dataset") == "cifar10":
        values.update(_CIFAR_ALL, **_CIFAR.get(preset, {}))
    values.update(overrides)
    return Config(**values)


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
    return text.lower() in ("true", "1")


def parse_override(text: str) -> tuple[str, object]:
    """'key=value' with the value converted to the field's type."""
    key, sep, value = text.partition("=")
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    if not sep or key not in types:
        raise ValueError(f"bad override {text!r}: expected key=value with key one of {sorted(types)}")
    kind = {"int": int, "float": float, "bool": _boolean}.get(types[key], str)
    try:
        return key, kind(value)
    except ValueError:
        raise ValueError(f"bad value {value!r} for {key}: expected {types[key]}") from None
