"""Building a run's pieces from its configuration, and loading a stored run back."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from . import store
from .data import ImageBank, load_dataset
from .models import EnsembleRNN
from .presets import Config
from .task import TaskSpec


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def task_spec(config: Config) -> TaskSpec:
    return TaskSpec(config.n_frames, config.min_delay, config.report_weight, loss=config.loss,
                    class_sampling=config.class_sampling, readout=config.readout, noise=config.noise)


def build_model(config: Config, bank: ImageBank) -> EnsembleRNN:
    return EnsembleRNN(config.arch, config.seeds, bank.dim, config.hidden_size, task_spec(config).n_outputs,
                       bank.image_shape, conv=config.has_cnn, seeds=config.member_seeds,
                       cell=config.cell, readout=config.readout, init=config.init, cnn=config.cnn)


ADAM_STATE = ("exp_avg", "exp_avg_sq", "step")
PENALTY_STATE = ("anchors", "rng")


def checkpoint_mismatch(config: Config, names: set[str]) -> str:
    """What is wrong with the tensor names of a checkpoint of ``config`` ('' when nothing): it must hold
    exactly the model's weights; Adam's whole state of each parameter that has one (a parameter no loss
    reaches has none); one data generator's state per member (or one for all, on the GPU's fast path);
    and, for a fine-tune with a speed penalty, the penalty's anchors and generator, and nothing else.
    The model is built on the meta device: no data, no memory."""
    shape = (3, 32, 32) if config.has_cnn else (1, 28, 28)  # the names do not depend on the image size
    with torch.device("meta"):
        model = build_model(config, SimpleNamespace(dim=int(np.prod(shape)), image_shape=shape))
    weights = {f"model/{k}" for k in model.state_dict()}
    stepped = {n.split("/")[1] for n in names if n.startswith("optim/")}
    adam = {f"optim/{i}/{k}" for i in stepped if i in {str(j) for j in range(len(list(model.parameters())))}
            for k in ADAM_STATE}
    generators = {f"rng/{k}" for k in range(config.seeds)}
    if {n for n in names if n.startswith("rng/")} == {"rng/0"}:
        generators = {"rng/0"}
    penalty = {f"penalty/{k}" for k in PENALTY_STATE}
    expected = weights | adam | generators | (penalty if names & penalty else set())
    parts = [f"{what} {', '.join(sorted(group)[:3])}{', ...' if len(group) > 3 else ''}"
             for what, group in (("lacks", expected - names), ("has unexpected", names - expected)) if group]
    return "; ".join(parts)


def data_generators(config: Config, device: torch.device) -> list[torch.Generator]:
    """One generator per member, seeded from (member seed, 'data') so it differs from the init stream;
    on the GPU's fast path a single generator seeded from all member seeds draws for every member."""
    if config.fast and device.type == "cuda":
        seeds = [int(np.random.SeedSequence([*config.member_seeds, 1]).generate_state(1)[0])]
    else:
        seeds = [int(np.random.SeedSequence([s, 1]).generate_state(1)[0]) for s in config.member_seeds]
    return [torch.Generator(device).manual_seed(s) for s in seeds]


def load_run(run_dir: Path, step: int | None = None, device: str | None = None) -> tuple[Config, EnsembleRNN, ImageBank]:
    """Configuration, model at checkpoint ``step`` (default: the last) and image bank of a run."""
    config = store.read_config(run_dir)
    device = resolve_device(device or config.device)
    bank = load_dataset(config.dataset).to(device)
    model = build_model(config, bank).to(device)
    load_weights(model, run_dir, step)
    return config, model, bank


def load_weights(model: EnsembleRNN, run_dir: Path, step: int | None = None) -> int:
    """Load the weights of checkpoint ``step`` (default: the last) into ``model``; returns the step."""
    steps = store.checkpoint_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"{run_dir} has no checkpoints yet")
    step = steps[-1] if step is None else step
    load_model_weights(model, store.load_checkpoint(run_dir, step), f"checkpoint step {step} of {run_dir}")
    return step


def load_model_weights(model: EnsembleRNN, checkpoint: dict[str, torch.Tensor], source: str) -> None:
    """Load a checkpoint's weights, refusing in one line any that do not fit the model (torch lists
    every mismatched tensor over many lines)."""
    weights = model_weights(checkpoint)
    expected = model.state_dict()
    wrong = [k for k in expected.keys() | weights.keys()
             if k not in weights or k not in expected or weights[k].shape != expected[k].shape]
    if wrong:
        first = sorted(wrong)[0]
        have = tuple(weights[first].shape) if first in weights else "nothing"
        want = tuple(expected[first].shape) if first in expected else "nothing"
        raise store.CorruptCheckpointError(f"{source}: its weights do not fit the run's configuration: {len(wrong)} tensors "
                                           f"differ, e.g. {first}: {have} in the file, {want} expected")
    model.load_state_dict(weights)


def model_weights(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint's tensors."""
    return {k[len("model/"):]: v for k, v in checkpoint.items() if k.startswith("model/")}
