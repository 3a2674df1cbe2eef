"""The 3-bit flip-flop of Sussillo & Barak (2013): a network that must remember, on each of its
channels, the sign of the last pulse it received. Its memories are known in advance, 2^bits
states, one per corner of a cube, so it is where a fixed-point analysis can be checked against
the answer. The network is a plain ``torch.nn.GRU`` with an ``nn.Linear`` readout, trained here
as anyone would train their own; the chapter "Your own network" analyses it with
:mod:`memrnn.fixedpoints` only.

Every channel is pulsed at t = 0, so every target is +-1 from the start (no "nothing yet" state).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load, save
from torch import nn
from tqdm import tqdm

from . import store
from .fixedpoints import step_function


@dataclass(frozen=True)
class FlipFlopConfig:
    bits: int = 3
    hidden_size: int = 16
    trial_length: int = 64
    pulse_probability: float = 0.05  # per channel and step, after the pulse at t = 0
    input_noise: float = 0.1         # Gaussian noise on every input during training
    batch_size: int = 128
    steps: int = 3000
    lr: float = 1e-2
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED):
            raise ValueError(f"seed={self.seed!r} is not allowed: expected an integer from 0 to {MAX_SEED}")
        check_noise("input_noise", self.input_noise)


MAX_SEED = 2**32 - 1
MAX_NOISE = 100.0  # a hundred times the pulses' size: beyond it every bit is lost at the first step


def check_noise(name: str, value) -> None:
    """Refuse a noise level that is not a standard deviation from 0 to ``MAX_NOISE``."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= MAX_NOISE):
        raise ValueError(f"{name}={value!r} is not allowed: a noise standard deviation is a number from 0 to "
                         f"{MAX_NOISE:g}")


# the network is small: GPU presets train the cpu network (it would not run faster there)
PRESETS = {"smoke": FlipFlopConfig(trial_length=32, batch_size=32, steps=150), "cpu": FlipFlopConfig()}
PRESETS.update(gpu=PRESETS["cpu"], paper=PRESETS["cpu"])


def make_config(preset: str, **overrides) -> FlipFlopConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {tuple(PRESETS)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def trials(config: FlipFlopConfig, n: int, generator: torch.Generator, noise: float | None = None):
    """Inputs (n, T, bits): +-1 pulses, plus Gaussian noise (default: the training noise); targets
    (n, T, bits): the sign of each channel's last pulse."""
    shape = (n, config.trial_length, config.bits)
    pulses = torch.rand(shape, generator=generator) < config.pulse_probability
    pulses[:, 0] = True
    signs = torch.randint(0, 2, shape, generator=generator) * 2.0 - 1
    inputs = pulses * signs
    last = torch.where(pulses, torch.arange(config.trial_length)[:, None], 0).cummax(1).values
    targets = inputs.gather(1, last)
    noise = config.input_noise if noise is None else noise
    check_noise("noise", noise)
    return inputs + noise * torch.randn(shape, generator=generator), targets


class FlipFlopNet(nn.Module):
    """A single-layer ``nn.GRU`` (batch first) read out by an ``nn.Linear``: what a user brings."""

    def __init__(self, config: FlipFlopConfig):
        super().__init__()
        self.gru = nn.GRU(config.bits, config.hidden_size, batch_first=True)
        self.readout = nn.Linear(config.hidden_size, config.bits)

    def forward(self, inputs: torch.Tensor):
        """Outputs and hidden states, both (n, T, ·)."""
        states, _ = self.gru(inputs)
        return self.readout(states), states


def train(config: FlipFlopConfig, progress: bool = True) -> FlipFlopNet:
    """Adam on the mean squared error of the outputs against the held signs, at every step."""
    torch.manual_seed(config.seed)
    net = FlipFlopNet(config)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    bar = tqdm(range(config.steps), desc="training", unit="step", disable=not progress, mininterval=1)
    for _ in bar:
        inputs, targets = trials(config, config.batch_size, generator)
        loss = (net(inputs)[0] - targets).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.1e}", refresh=False)
    return net.eval()


def trained(config: FlipFlopConfig, runs: Path, progress: bool = True) -> FlipFlopNet:
    """The network trained with ``config``, from the runs cache when it holds one."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    path = Path(runs) / f"flipflop-{digest}.safetensors"
    net = FlipFlopNet(config)
    if path.exists():
        net.load_state_dict(load(path.read_bytes()))
        return net.eval()
    net = train(config, progress)
    store.atomic_write(path, save({k: v.contiguous() for k, v in net.state_dict().items()}))
    return net


@torch.no_grad()
def holding_times(net: FlipFlopNet, points: torch.Tensor, noise: float, n_trials: int = 100, max_steps: int = 1000,
                  every: int = 5, relax: int = 30, seed: int = 0) -> torch.Tensor:
    """Steps (P, n_trials) each state in ``points`` keeps the bits it reads out while Gaussian noise of
    standard deviation ``noise`` is the only input; ``max_steps`` where it never lost them.

    A bit counts as lost when the state has left its basin: every ``every`` steps a copy relaxes
    ``relax`` steps without input and its readout is compared with the start's (the readout of
    the noisy state itself would flip with every large kick and return at once)."""
    check_noise("noise", noise)
    if not (isinstance(seed, int) and 0 <= seed <= MAX_SEED):
        raise ValueError(f"seed={seed!r} is not allowed: expected an integer from 0 to {MAX_SEED}")
    step = step_function(net.gru)
    generator = torch.Generator().manual_seed(seed)
    held = torch.sign(net.readout(points)).repeat_interleave(n_trials, 0)
    h = points.repeat_interleave(n_trials, 0)
    lost = torch.full((len(h),), max_steps)
    rest = torch.zeros(len(h), net.gru.input_size)
    for t in range(1, max_steps + 1):
        h = step(h, noise * torch.randn(rest.shape, generator=generator))
        if t % every == 0:
            relaxed = h
            for _ in range(relax):
                relaxed = step(relaxed, rest)
            changed = (torch.sign(net.readout(relaxed)) != held).any(-1)
            lost = torch.where(changed & (lost == max_steps), t, lost)
            if (lost < max_steps).all():
                break
    return lost.view(len(points), n_trials)
