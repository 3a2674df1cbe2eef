"""Ensembles of independent recurrent networks stored as batched tensors.

Every weight carries a leading ensemble dimension E and every state is (E, B, S), so the E
networks of a condition (one per seed) train in one pass of batched matmuls. A single network
is an ensemble of one.

Each model exposes one map, ``step(state, frame, trigger) -> state``, and the unroll in
``forward`` is built from the same two pieces (``project`` then ``recur``), so the dynamics
analysed by slow-point search, Jacobians and regularisers are exactly the dynamics trained.
The state is one flat tensor: h for GRU and vanilla RNN, the concatenation (h, c) for LSTM.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

ARCHS = ("gru", "lstm", "rnn")
_GATES = {"gru": 3, "lstm": 4, "rnn": 1}
CONV_CHANNELS = 128
CONV_FEATURES = 1024


def _ensemble_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (E, N, I) @ weight (E, I, O) + bias (E, 1, O)."""
    return torch.baddbmm(bias, x, weight)


class ConvFrontEnd(nn.Module):
    """The reference CIFAR-10 CNN, one per ensemble member, run as grouped convolutions.

    3 x [3x3 conv, 128 filters, leaky-ReLU, 2x2 max-pool] -> 2048 -> FC 2048 -> FC 1024 (leaky-ReLU).
    """

    def __init__(self, n_members: int, image_shape: tuple[int, int, int]):
        super().__init__()
        channels, height, width = image_shape
        self.n_members, self.image_shape = n_members, tuple(image_shape)
        E, C = n_members, CONV_CHANNELS
        self.conv_weights = nn.ParameterList()
        self.conv_biases = nn.ParameterList()
        for c_in in (channels, C, C):
            self.conv_weights.append(nn.Parameter(torch.empty(E, C, c_in, 3, 3)))
            self.conv_biases.append(nn.Parameter(torch.empty(E, C)))
        flat = C * (height // 8) * (width // 8)
        self.fc1_weight = nn.Parameter(torch.empty(E, flat, 2048))
        self.fc1_bias = nn.Parameter(torch.empty(E, 1, 2048))
        self.fc2_weight = nn.Parameter(torch.empty(E, 2048, CONV_FEATURES))
        self.fc2_bias = nn.Parameter(torch.empty(E, 1, CONV_FEATURES))
        self.out_features = CONV_FEATURES

    def init_bounds(self) -> dict[str, float]:
        bounds = {}
        for i, w in enumerate(self.conv_weights):
            fan_in = w.shape[2] * 9
            bounds[f"conv_weights.{i}"] = bounds[f"conv_biases.{i}"] = 1 / math.sqrt(fan_in)
        bounds["fc1_weight"] = bounds["fc1_bias"] = 1 / math.sqrt(self.fc1_weight.shape[1])
        bounds["fc2_weight"] = bounds["fc2_bias"] = 1 / math.sqrt(self.fc2_weight.shape[1])
        return bounds

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (E, N, C*H*W) -> features (E, N, 1024)."""
        E, N, _ = frames.shape
        x = frames.reshape(E, N, *self.image_shape).transpose(0, 1).reshape(N, -1, *self.image_shape[1:])
        for w, b in zip(self.conv_weights, self.conv_biases):
            x = F.conv2d(x, w.reshape(-1, *w.shape[2:]), b.reshape(-1), padding=1, groups=E)
            x = F.max_pool2d(F.leaky_relu(x), 2)
        x = x.reshape(N, E, -1).transpose(0, 1)
        x = F.leaky_relu(_ensemble_linear(x, self.fc1_weight, self.fc1_bias))
        return F.leaky_relu(_ensemble_linear(x, self.fc2_weight, self.fc2_bias))


class EnsembleRNN(nn.Module):
    """E independent networks: (optional CNN) -> GRU / LSTM / tanh RNN -> linear readout.

    The cell input is the frame (or its CNN features) with the trigger channel appended.
    Weight layout per member matches ``torch.nn.GRU/LSTM/RNN`` transposed (gate order r,z,n for
    GRU and i,f,g,o for LSTM), so member k loads into a torch module with ``to_torch(k)``.
    """

    def __init__(self, arch: str, n_members: int, input_dim: int, hidden_size: int,
                 n_outputs: int = 11, image_shape: tuple[int, int, int] | None = None,
                 conv: bool = False, seeds: list[int] | None = None):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")
        if conv and image_shape is None:
            raise ValueError("the CNN front end needs image_shape=(C, H, W)")
        self.arch, self.n_members, self.hidden_size = arch, n_members, hidden_size
        self.input_dim, self.n_outputs = input_dim, n_outputs
        self.frontend = ConvFrontEnd(n_members, image_shape) if conv else None
        features = self.frontend.out_features if conv else input_dim
        self.cell_input_size = features + 1
        E, H, G = n_members, hidden_size, _GATES[arch] * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(E, self.cell_input_size, G))
        self.weight_hh = nn.Parameter(torch.empty(E, H, G))
        self.bias_ih = nn.Parameter(torch.empty(E, 1, G))
        self.bias_hh = nn.Parameter(torch.empty(E, 1, G))
        self.readout_weight = nn.Parameter(torch.empty(E, H, n_outputs))
        self.readout_bias = nn.Parameter(torch.empty(E, 1, n_outputs))
        self.seeds = list(range(n_members)) if seeds is None else list(seeds)
        if len(self.seeds) != n_members:
            raise ValueError(f"got {len(self.seeds)} seeds for {n_members} members")
        self._initialise()

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size if self.arch == "lstm" else self.hidden_size

    def _init_bounds(self) -> dict[str, float]:
        """PyTorch's defaults: U(-1/sqrt(fan), 1/sqrt(fan)), fan = H for the cell."""
        cell = 1 / math.sqrt(self.hidden_size)
        bounds = {"weight_ih": cell, "weight_hh": cell, "bias_ih": cell, "bias_hh": cell,
                  "readout_weight": cell, "readout_bias": cell}
        if self.frontend is not None:
            bounds.update({f"frontend.{k}": v for k, v in self.frontend.init_bounds().items()})
        return bounds

    @torch.no_grad()
    def _initialise(self) -> None:
        """Member k is drawn from its own generator seeded with seeds[k], so it equals the same
        network built alone (or in any other ensemble) with that seed."""
        bounds = self._init_bounds()
        params = dict(self.named_parameters())
        for k, seed in enumerate(self.seeds):
            generator = torch.Generator().manual_seed(int(seed))
            for name in sorted(params):
                member = torch.empty(params[name].shape[1:])
                member.uniform_(-bounds[name], bounds[name], generator=generator)
                params[name][k] = member

    def init_state(self, batch_size: int) -> torch.Tensor:
        p = self.weight_hh
        return torch.zeros(self.n_members, batch_size, self.state_size, device=p.device, dtype=p.dtype)

    def hidden(self, state: torch.Tensor) -> torch.Tensor:
        """The part of the state the readout sees (h)."""
        return state[..., : self.hidden_size]

    def project(self, frames: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
        """Input projection of any number of frames: frames (E, N, D), trigger (E, N) -> (E, N, G)."""
        features = frames if self.frontend is None else self.frontend(frames)
        # the trigger row is applied separately: concatenating it would copy every frame
        pixels = _ensemble_linear(features, self.weight_ih[:, :-1], self.bias_ih)
        return pixels + trigger.unsqueeze(-1).to(pixels.dtype) * self.weight_ih[:, -1:]

    def recur(self, state: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        """One recurrent update from a projected input: state (E, B, S), projected (E, B, G)."""
        H = self.hidden_size
        h = state[..., :H]
        recurrent = _ensemble_linear(h, self.weight_hh, self.bias_hh)
        if self.arch == "gru":
            p_rz, p_n = projected.split([2 * H, H], dim=-1)
            h_rz, h_n = recurrent.split([2 * H, H], dim=-1)
            r, z = torch.sigmoid(p_rz + h_rz).chunk(2, dim=-1)
            n = torch.tanh(p_n + r * h_n)
            return n + z * (h - n)
        if self.arch == "lstm":
            i, f, g, o = (projected + recurrent).chunk(4, dim=-1)
            c = torch.sigmoid(f) * state[..., H:] + torch.sigmoid(i) * torch.tanh(g)
            return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)
        return torch.tanh(projected + recurrent)

    def step(self, state: torch.Tensor, frame: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
        """The one-step map F(state, input): state (E, B, S), frame (E, B, D), trigger (E, B)."""
        return self.recur(state, self.project(frame, trigger))

    def readout(self, state: torch.Tensor) -> torch.Tensor:
        """Logits (E, B, n_outputs) of the linear readout of h."""
        return _ensemble_linear(self.hidden(state), self.readout_weight, self.readout_bias)

    def forward(self, frames: torch.Tensor, trigger: torch.Tensor, state: torch.Tensor | None = None,
                return_hidden: bool = False):
        """Unroll over frames (E, B, T, D) with trigger (E, B, T); returns logits (E, B, T, O)
        and, with ``return_hidden``, the hidden states h (E, B, T, H) after each frame."""
        E, B, T, D = frames.shape
        projected = self.project(frames.reshape(E, B * T, D), trigger.reshape(E, B * T)).reshape(E, B, T, -1)
        state = self.init_state(B) if state is None else state
        hiddens = []
        for step_input in projected.unbind(2):  # unbind: one gradient buffer, not one per step
            state = self.recur(state, step_input)
            hiddens.append(self.hidden(state))
        hidden = torch.stack(hiddens, dim=2)
        logits = _ensemble_linear(hidden.reshape(E, B * T, -1), self.readout_weight, self.readout_bias)
        logits = logits.reshape(E, B, T, -1)
        return (logits, hidden) if return_hidden else logits

    def member(self, k: int) -> "EnsembleRNN":
        """Member k as an ensemble of one (a copy)."""
        return self.select([k])

    def select(self, members: list[int]) -> "EnsembleRNN":
        """A new ensemble holding copies of the given members."""
        image_shape = self.frontend.image_shape if self.frontend is not None else None
        sub = EnsembleRNN(self.arch, len(members), self.input_dim, self.hidden_size, self.n_outputs,
                          image_shape, self.frontend is not None, [self.seeds[k] for k in members])
        sub = sub.to(device=self.weight_hh.device, dtype=self.weight_hh.dtype)
        index = torch.as_tensor(members, device=self.weight_hh.device)
        sub.load_state_dict({name: p.detach().index_select(0, index) for name, p in self.state_dict().items()})
        return sub

    def to_torch(self, k: int) -> tuple[nn.Module, nn.Linear]:
        """Member k as ``torch.nn.GRU/LSTM/RNN`` (batch_first) plus ``nn.Linear`` readout.

        Only for networks without the CNN front end."""
        if self.frontend is not None:
            raise ValueError("to_torch covers pixel-input networks only")
        cls = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[self.arch]
        rnn = cls(self.cell_input_size, self.hidden_size, batch_first=True)
        readout = nn.Linear(self.hidden_size, self.n_outputs)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(self.weight_ih[k].T)
            rnn.weight_hh_l0.copy_(self.weight_hh[k].T)
            rnn.bias_ih_l0.copy_(self.bias_ih[k, 0])
            rnn.bias_hh_l0.copy_(self.bias_hh[k, 0])
            readout.weight.copy_(self.readout_weight[k].T)
            readout.bias.copy_(self.readout_bias[k, 0])
        return rnn, readout
