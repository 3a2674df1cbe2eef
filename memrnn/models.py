"""Ensembles of independent recurrent networks stored as batched tensors.

Every weight carries a leading ensemble dimension E and every state is (E, B, S), so the E
networks of a condition (one per seed) train in one pass of batched matmuls. A single network
is an ensemble of one.

Each model exposes one map, ``step(state, frame, trigger) -> state``, and the unroll in
``forward`` is built from the same two pieces (``project`` then ``recur``), so the dynamics
analysed by slow-point search, Jacobians and regularisers are exactly the dynamics trained.
The state is one flat tensor: h for GRU and vanilla RNN, the concatenation (h, c) for LSTM.

By default every piece has the reference's form (Haviv et al.'s code): one bias per gate, the GRU's
reset gate applied to h before the recurrent matrix and h' = (1 - z) h + z n, sigmoid outputs read by
a softmax, weights N(0, 1)/sqrt(fan_in) and biases 0.01 N(0, 1), and the CIFAR-10 CNN as the reference
parameterises it (``cnn="reference"``, see :class:`ConvFrontEnd`). PyTorch's forms stay available as
switches (``cell="torch"``, ``readout="linear"``, ``init="uniform"``, ``cnn="plain"``) so their effect can be
measured.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

ARCHS = ("gru", "lstm", "rnn")
CELLS = ("reference", "torch")            # one bias per gate, reference GRU | torch.nn's forms
READOUTS = ("sigmoid-softmax", "linear")  # sigmoid outputs fed to the softmax | linear logits
INITS = ("reference", "uniform")          # N(0,1)/sqrt(fan_in), biases 0.01 N(0,1) | U(+-1/sqrt(H))
CNN_FORMS = ("reference", "plain")        # conv variables scaled in the forward pass, slope 0.2 | plain, slope 0.01
_GATES = {"gru": 3, "lstm": 4, "rnn": 1}
CONV_CHANNELS = 128
CONV_FEATURES = 1024
_CELL_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "readout_weight", "readout_bias")


def _ensemble_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (E, N, I) @ weight (E, I, O) + bias (E, 1, O)."""
    return torch.baddbmm(bias, x, weight)


class ConvFrontEnd(nn.Module):
    """The reference CIFAR-10 CNN, one per ensemble member, run as grouped convolutions.

    3 x [3x3 conv, 128 filters, leaky-ReLU, 2x2 max-pool] -> 2048 -> FC 2048 -> FC 2048 -> FC 1024
    (leaky-ReLU).

    ``form="reference"``, as the reference's code: each conv kernel is trained as a variable drawn
    truncated N(0, 1) (within 2 standard deviations) and each conv bias as a variable set to 0.1, and the
    forward pass divides them by sqrt(c_in * c_out) and sqrt(c_out). The divisor then also scales Adam's
    step on the effective weights (Adam's step on a variable is about lr whatever its scale), so it is
    part of the model, not only of its initialisation. Leaky-ReLU slope 0.2, TensorFlow's default.
    ``form="plain"``: the conv weights are the trained variables, initialised like the other layers
    (see ``EnsembleRNN.init``); slope 0.01, PyTorch's default.
    """

    def __init__(self, n_members: int, image_shape: tuple[int, int, int], form: str = "reference"):
        super().__init__()
        if form not in CNN_FORMS:
            raise ValueError(f"unknown CNN form {form!r}; choose one of {CNN_FORMS}")
        channels, height, width = image_shape
        self.n_members, self.image_shape, self.form = n_members, tuple(image_shape), form
        self.slope = 0.2 if form == "reference" else 0.01
        E, C = n_members, CONV_CHANNELS
        self.conv_weights = nn.ParameterList()
        self.conv_biases = nn.ParameterList()
        self.divisors: dict[str, float] = {}  # trained variable -> what the forward pass divides it by
        for i, c_in in enumerate((channels, C, C)):
            self.conv_weights.append(nn.Parameter(torch.empty(E, C, c_in, 3, 3)))
            self.conv_biases.append(nn.Parameter(torch.empty(E, C)))
            if form == "reference":
                self.divisors.update({f"conv_weights.{i}": math.sqrt(c_in * C), f"conv_biases.{i}": math.sqrt(C)})
        flat = C * (height // 8) * (width // 8)
        self.fc1_weight = nn.Parameter(torch.empty(E, flat, 2048))
        self.fc1_bias = nn.Parameter(torch.empty(E, 1, 2048))
        self.fc2_weight = nn.Parameter(torch.empty(E, 2048, 2048))
        self.fc2_bias = nn.Parameter(torch.empty(E, 1, 2048))
        self.fc3_weight = nn.Parameter(torch.empty(E, 2048, CONV_FEATURES))
        self.fc3_bias = nn.Parameter(torch.empty(E, 1, CONV_FEATURES))
        self.out_features = CONV_FEATURES

    def fan_ins(self) -> dict[str, int]:
        fans = {}
        for i, w in enumerate(self.conv_weights):
            fans[f"conv_weights.{i}"] = fans[f"conv_biases.{i}"] = w.shape[2] * 9
        for layer in ("fc1", "fc2", "fc3"):
            fans[f"{layer}_weight"] = fans[f"{layer}_bias"] = getattr(self, f"{layer}_weight").shape[1]
        return fans

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (E, N, C*H*W) -> features (E, N, 1024)."""
        E, N, _ = frames.shape
        x = frames.reshape(E, N, *self.image_shape).transpose(0, 1).reshape(N, -1, *self.image_shape[1:])
        for i, (w, b) in enumerate(zip(self.conv_weights, self.conv_biases)):
            if self.form == "reference":
                w, b = w / self.divisors[f"conv_weights.{i}"], b / self.divisors[f"conv_biases.{i}"]
            x = F.conv2d(x, w.reshape(-1, *w.shape[2:]), b.reshape(-1), padding=1, groups=E)
            x = F.max_pool2d(F.leaky_relu(x, self.slope), 2)
        x = x.reshape(N, E, -1).transpose(0, 1)
        for layer in ("fc1", "fc2", "fc3"):
            linear = _ensemble_linear(x, getattr(self, f"{layer}_weight"), getattr(self, f"{layer}_bias"))
            x = F.leaky_relu(linear, self.slope)
        return x


class EnsembleRNN(nn.Module):
    """E independent networks: (optional CNN) -> GRU / LSTM / tanh RNN -> readout.

    The cell input is the frame (or its CNN features) with the trigger channel appended.
    Weight layout per member matches ``torch.nn.GRU/LSTM/RNN`` transposed (gate order r,z,n for
    GRU and i,f,g,o for LSTM), so a torch-form member loads into a torch module with ``to_torch(k)``.
    In the reference cell form ``bias_hh`` stays zero and is not trained (one bias per gate).
    """

    def __init__(self, arch: str, n_members: int, input_dim: int, hidden_size: int,
                 n_outputs: int = 11, image_shape: tuple[int, int, int] | None = None,
                 conv: bool = False, seeds: list[int] | None = None, cell: str = "reference",
                 readout: str = "sigmoid-softmax", init: str = "reference", cnn: str = "reference"):
        super().__init__()
        for name, value, allowed in (("architecture", arch, ARCHS), ("cell", cell, CELLS),
                                     ("readout", readout, READOUTS), ("init", init, INITS), ("cnn", cnn, CNN_FORMS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of {allowed}")
        self.cell, self.readout_form, self.init, self.cnn = cell, readout, init, cnn
        if conv and image_shape is None:
            raise ValueError("the CNN front end needs image_shape=(C, H, W)")
        self.arch, self.n_members, self.hidden_size = arch, n_members, hidden_size
        self.input_dim, self.n_outputs = input_dim, n_outputs
        self.frontend = ConvFrontEnd(n_members, image_shape, cnn) if conv else None
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
        self.bias_hh.requires_grad_(cell == "torch")

    @property
    def divisors(self) -> dict[str, float]:
        """The parameters the forward pass divides by a constant (the reference CNN's conv variables)."""
        return {} if self.frontend is None else {f"frontend.{k}": d for k, d in self.frontend.divisors.items()}

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size if self.arch == "lstm" else self.hidden_size

    def _fan_ins(self) -> dict[str, int]:
        """fan_in of every parameter: the cell's input size for input weights, H for recurrent and
        readout weights (biases share their weight's)."""
        H, I = self.hidden_size, self.cell_input_size
        fans = {"weight_ih": I, "bias_ih": I, "weight_hh": H, "bias_hh": H, "readout_weight": H, "readout_bias": H}
        if self.frontend is not None:
            fans.update({f"frontend.{k}": v for k, v in self.frontend.fan_ins().items()})
        return fans

    @torch.no_grad()
    def _initialise(self) -> None:
        """Member k is drawn from its own generator seeded with seeds[k], so it equals the same
        network built alone (or in any other ensemble) with that seed.

        ``reference``: weights N(0, 1)/sqrt(fan_in), biases 0.01 N(0, 1), bias_hh 0 (the reference's
        one bias per gate); ``uniform``: PyTorch's U(-1/sqrt(H), 1/sqrt(H)) for the cell and readout,
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the CNN. The reference CNN's conv variables are drawn as
        its code draws them, whatever ``init``: kernels truncated N(0, 1), biases 0.1."""
        fans = self._fan_ins()
        params = dict(self.named_parameters())
        scaled = self.divisors
        for k, seed in enumerate(self.seeds):
            generator = torch.Generator().manual_seed(int(seed))
            for name in sorted(params):
                member = torch.empty(params[name].shape[1:])
                if name in scaled and "bias" in name:
                    member.fill_(0.1)
                elif name in scaled:
                    nn.init.trunc_normal_(member, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=generator)
                elif self.init == "uniform":
                    bound = 1 / math.sqrt(self.hidden_size if name in _CELL_PARAMS else fans[name])
                    member.uniform_(-bound, bound, generator=generator)
                elif "bias" in name:
                    member.normal_(0, 0.01, generator=generator)
                else:
                    member.normal_(0, 1 / math.sqrt(fans[name]), generator=generator)
                params[name][k] = member
            if self.cell == "reference":
                params["bias_hh"][k] = 0

    def init_state(self, batch_size: int) -> torch.Tensor:
        p = self.weight_hh
        return torch.zeros(self.n_members, batch_size, self.state_size, device=p.device, dtype=p.dtype)

    def hidden(self, state: torch.Tensor) -> torch.Tensor:
        """The part of the state the readout sees (h)."""
        return state[..., : self.hidden_size]

    def project(self, frames: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
        """Input projection of any number of frames: frames (E, N, D), trigger (E, N) -> (E, N, G)."""
        return self.project_features(frames if self.frontend is None else self.frontend(frames), trigger)

    def project_features(self, features: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
        """Input projection of the cell's input features (the frame, or its CNN features)."""
        # the trigger row is applied separately: concatenating it would copy every frame
        pixels = _ensemble_linear(features, self.weight_ih[:, :-1], self.bias_ih)
        return pixels + trigger.unsqueeze(-1).to(pixels.dtype) * self.weight_ih[:, -1:]

    def recur(self, state: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        """One recurrent update from a projected input: state (E, B, S), projected (E, B, G)."""
        H = self.hidden_size
        h = state[..., :H]
        recurrent = None if self.arch == "gru" and self.cell == "reference" else \
            _ensemble_linear(h, self.weight_hh, self.bias_hh)
        if self.arch == "gru" and self.cell == "reference":
            # z = s(W_z x + U_z h + b_z), r = s(W_r x + U_r h + b_r), h' = (1-z) h + z tanh(W_n x + U_n (r h) + b_n)
            p_rz, p_n = projected.split([2 * H, H], dim=-1)
            r, z = torch.sigmoid(p_rz + torch.bmm(h, self.weight_hh[..., : 2 * H])).chunk(2, dim=-1)
            n = torch.tanh(p_n + torch.bmm(r * h, self.weight_hh[..., 2 * H:]))
            return h + z * (n - h)
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
        """Outputs (E, B, n_outputs) of the readout of h: what the softmax reads (``logits``)."""
        return self._read(_ensemble_linear(self.hidden(state), self.readout_weight, self.readout_bias))

    def _read(self, linear: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(linear) if self.readout_form == "sigmoid-softmax" else linear

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
        logits = self._read(logits).reshape(E, B, T, -1)
        return (logits, hidden) if return_hidden else logits

    def member(self, k: int) -> "EnsembleRNN":
        """Member k as an ensemble of one (a copy)."""
        return self.select([k])

    def select(self, members: list[int]) -> "EnsembleRNN":
        """A new ensemble holding copies of the given members."""
        image_shape = self.frontend.image_shape if self.frontend is not None else None
        sub = EnsembleRNN(self.arch, len(members), self.input_dim, self.hidden_size, self.n_outputs,
                          image_shape, self.frontend is not None, [self.seeds[k] for k in members],
                          self.cell, self.readout_form, self.init, self.cnn)
        sub = sub.to(device=self.weight_hh.device, dtype=self.weight_hh.dtype)
        index = torch.as_tensor(members, device=self.weight_hh.device)
        sub.load_state_dict({name: p.detach().index_select(0, index) for name, p in self.state_dict().items()})
        return sub

    def to_torch(self, k: int) -> tuple[nn.Module, nn.Linear]:
        """Member k as ``torch.nn.GRU/LSTM/RNN`` (batch_first) plus ``nn.Linear`` readout.

        Only for networks without the CNN front end, and for GRUs only in the torch cell form (the
        reference GRU applies its reset gate elsewhere). With the sigmoid readout, apply
        ``torch.sigmoid`` to the ``nn.Linear``'s output. The inverse of :meth:`from_torch`."""
        if self.frontend is not None:
            raise ValueError("to_torch covers pixel-input networks only")
        if self.arch == "gru" and self.cell != "torch":
            raise ValueError("to_torch needs cell='torch' for a GRU: torch.nn.GRU has no reference-form cell")
        cls = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[self.arch]
        like = dict(device=self.weight_hh.device, dtype=self.weight_hh.dtype)
        rnn = cls(self.cell_input_size, self.hidden_size, batch_first=True, **like)
        readout = nn.Linear(self.hidden_size, self.n_outputs, **like)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(self.weight_ih[k].T)
            rnn.weight_hh_l0.copy_(self.weight_hh[k].T)
            rnn.bias_ih_l0.copy_(self.bias_ih[k, 0])
            rnn.bias_hh_l0.copy_(self.bias_hh[k, 0])
            readout.weight.copy_(self.readout_weight[k].T)
            readout.bias.copy_(self.readout_bias[k, 0])
        return rnn, readout

    @classmethod
    def from_torch(cls, rnn: nn.Module, readout: nn.Linear | None = None) -> "EnsembleRNN":
        """A one-member network computing what a single-layer ``torch.nn.GRU``, ``LSTM`` or ``RNN``
        (tanh) computes, followed by ``readout`` (without one, the outputs are h itself), so that
        this package's analyses run on networks trained elsewhere. The inverse of :meth:`to_torch`.

        The last of the module's inputs becomes the trigger channel: ``forward(x[..., :-1],
        x[..., -1])`` on batch-first inputs (E = 1 in front) gives ``readout(rnn(x)[0])``. A GRU gets
        the torch cell form (``cell="torch"``): torch.nn.GRU applies its reset gate to U_n h, not to
        h as the reference cell does. Biases a module lacks (``bias=False``) are zero."""
        check_torch_rnn(rnn)
        if isinstance(rnn, nn.RNN) and rnn.nonlinearity != "tanh":
            raise ValueError(f"an RNN with nonlinearity={rnn.nonlinearity!r}: only 'tanh' is supported")
        H = rnn.hidden_size
        if readout is not None and (not isinstance(readout, nn.Linear) or readout.in_features != H):
            raise ValueError(f"readout must be an nn.Linear with in_features={H} (the RNN's hidden size), "
                             f"got {readout!r}")
        arch = next(a for a, kind in (("gru", nn.GRU), ("lstm", nn.LSTM), ("rnn", nn.RNN)) if isinstance(rnn, kind))
        like = dict(device=rnn.weight_hh_l0.device, dtype=rnn.weight_hh_l0.dtype)
        if readout is None:
            readout = nn.Linear(H, H, **like)
            with torch.no_grad():
                readout.weight.copy_(torch.eye(H, **like))
                readout.bias.zero_()
        model = cls(arch, 1, rnn.input_size - 1, H, readout.out_features, cell="torch", readout="linear").to(**like)
        with torch.no_grad():
            model.weight_ih[0] = rnn.weight_ih_l0.T
            model.weight_hh[0] = rnn.weight_hh_l0.T
            model.bias_ih[0, 0] = rnn.bias_ih_l0 if rnn.bias else 0
            model.bias_hh[0, 0] = rnn.bias_hh_l0 if rnn.bias else 0
            model.readout_weight[0] = readout.weight.T
            model.readout_bias[0, 0] = 0 if readout.bias is None else readout.bias
        return model


def check_torch_rnn(rnn) -> None:
    """Refuse a torch module that one step map of h (or (h, c) for an LSTM) cannot describe."""
    if not isinstance(rnn, (nn.GRU, nn.LSTM, nn.RNN)):
        raise TypeError(f"expected a torch.nn.GRU, LSTM or RNN, got {type(rnn).__name__}")
    name = type(rnn).__name__
    if rnn.num_layers != 1:
        raise ValueError(f"a {rnn.num_layers}-layer {name}: only single-layer networks (num_layers=1) are supported")
    if rnn.bidirectional:
        raise ValueError(f"a bidirectional {name}: only unidirectional networks are supported")
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"an LSTM with proj_size={rnn.proj_size}: only proj_size=0 is supported")
