"""The CPU fast path: one autograd node for the whole recurrence, bf16 input projections.

Why: an eager training step of the ``cpu`` shape spends most of its time outside the input-projection
matmul: in per-step slices and copies of ``weight_hh``, in autograd's per-step gradient buffers, in
the stacking of per-step results and in a dozen small elementwise operations per step. Here the
projection is one autograd node (frames with the trigger and a constant 1 appended, a matrix the
fast path's sampler draws directly; one bf16 matmul forward and one for the weight gradient, fp32
accumulation on oneDNN's AVX512-BF16 / AMX kernels, fp32 master weights) and the unroll is another:
the forward writes every step's states and activated gates into preallocated buffers, the backward
walks back through time writing every step's input gradient into one buffer, and the recurrent
weight gradient is one matmul over all steps. Between a step's matmuls one kernel of ``cells.c``
(compiled at first use, ``memrnn.native``) does all its elementwise work. ``weight_hh`` is split
(and transposed for the backward) once per unroll, never per step. Every matmul output is
contiguous: a strided one makes a batched matmul fall back to one small matmul per member.

The same equations as ``EnsembleRNN.recur`` (tested against it in float64). The torch-form GRU
(``cell="torch"``) keeps autograd's recurrence, with the bf16 projection. Slow-point searches and
Jacobians never use this module: they need fp32/fp64 derivatives of the exact map.
"""
from __future__ import annotations

import ctypes
from functools import lru_cache

import torch
from torch.nn import functional as F

from . import native
from .models import EnsembleRNN

BF16 = torch.bfloat16


def _tanh(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """tanh as 2 sigmoid(2x) - 1: ATen's CPU tanh costs about six of its sigmoids; this one's error is
    an absolute 1e-7 near 0 instead of a relative one."""
    return torch.sigmoid(x * 2, out=out).mul_(2).sub_(1)


class _Projection(torch.autograd.Function):
    """features (E, N, D), trigger (E, N), weight_ih (E, D+1, G), bias (E, 1, G) -> (E, N, G) in the
    bias's dtype: one bf16 matmul of the features with the trigger and a constant 1 appended, so the
    trigger row and the bias are rows of the matmul's weight and their gradients rows of its weight
    gradient (no separate terms, no sliced weight whose gradient would be a zero-filled copy).
    ``inputs``, when given, is that matrix (E, N, D+2) already, drawn so by the fast path's sampler."""

    @staticmethod
    def forward(ctx, features, trigger, weight, bias, inputs):
        E, N, D = features.shape
        if inputs is None:
            inputs = torch.empty(E, N, D + 2, dtype=BF16, device=features.device)
            inputs[..., :D] = features
            inputs[..., D] = trigger
            inputs[..., D + 1] = 1
        weight_low = torch.empty(E, D + 2, weight.shape[-1], dtype=BF16, device=weight.device)
        weight_low[:, : D + 1] = weight  # cast in place: no float32 concatenation first
        weight_low[:, D + 1:] = bias
        ctx.save_for_backward(inputs, weight_low)
        return torch.bmm(inputs, weight_low).to(bias.dtype)

    @staticmethod
    def backward(ctx, grad):
        inputs, weight_low = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_low = grad.to(BF16)
        grad_features = torch.bmm(grad_low, weight_low[:, :-2].transpose(1, 2)).to(grad.dtype) if needs[0] else None
        rows = torch.bmm(inputs.transpose(1, 2), grad_low) if needs[2] or needs[3] else None
        # each gradient cast from its bf16 rows straight into a contiguous tensor, which autograd keeps as it is
        return (grad_features, None, rows[:, :-1].to(grad.dtype) if needs[2] else None,
                rows[:, -1:].to(grad.dtype) if needs[3] else None, None)


def project(model: EnsembleRNN, frames: torch.Tensor, trigger: torch.Tensor, bias: torch.Tensor,
            inputs: torch.Tensor | None = None) -> torch.Tensor:
    """``model.project`` with the pixel matmul in bf16 and ``bias`` for ``bias_ih``: frames (E, N, D),
    trigger (E, N) -> (E, N, G); ``inputs``, the sampler's projection matrix, serves a model without a
    front end."""
    if model.frontend is not None:
        return _Projection.apply(model.frontend(frames), trigger, model.weight_ih, bias, None)
    return _Projection.apply(frames, trigger, model.weight_ih, bias, inputs)


def fused_kind(model: EnsembleRNN) -> str | None:
    """Which fused recurrence serves this model (None: autograd's)."""
    if model.arch == "gru":
        return "gru" if model.cell == "reference" else None
    return model.arch


def unroll(model: EnsembleRNN, frames: torch.Tensor, trigger: torch.Tensor,
           inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (E, B, T, O) and hidden states (E, B, T, H) from zero state, as ``model(..., return_hidden=True)``.

    frames (E, B, T, D) and trigger (E, B, T); with ``inputs``, the (E, T x B, D + 2) projection matrix
    that frames are a view of (``Batch.inputs``), the projection multiplies it as it is."""
    E, B, T, D = frames.shape
    kind = fused_kind(model)
    # lstm / rnn: the recurrent bias is constant over time, so it joins the projection's bias
    bias = model.bias_ih if kind in (None, "gru") else model.bias_ih + model.bias_hh
    projected = project(model, frames.transpose(1, 2).reshape(E, T * B, D),
                        trigger.transpose(1, 2).reshape(E, T * B), bias, inputs).view(E, T, B, -1)
    if kind is None:
        state, hiddens = model.init_state(B), []
        for step_input in projected.unbind(1):
            state = model.recur(state, step_input)
            hiddens.append(model.hidden(state))
        hidden = torch.stack(hiddens, 1)
    else:
        hidden = _FusedRecurrence.apply(projected, model.weight_hh, kind)
    # outputs padded to a multiple of 16: with 11 columns the readout's matmuls, forward and backward, take 2.7 times longer
    O = model.n_outputs
    weight, bias = (F.pad(p, (0, -O % 16)) for p in (model.readout_weight, model.readout_bias))
    logits = torch.baddbmm(bias, hidden.reshape(E, T * B, -1), weight)[..., :O]
    logits = model._read(logits).view(E, T, B, O).transpose(1, 2)
    return logits, hidden.transpose(1, 2)


# the C kernels of cells.c and how many (E, B, width) views each takes
_KERNELS = {"gru_gates": 3, "gru_update": 4, "gru_back_update": 7, "gru_back_reset": 5, "lstm_cell": 5, "lstm_back": 7}


@lru_cache(maxsize=None)
def _cells(dtype: torch.dtype) -> ctypes.CDLL:
    real = {torch.float32: "float", torch.float64: "double"}.get(dtype)
    if real is None:
        raise ValueError(f"the fused recurrence runs in float32 or float64, not {dtype}")
    library = native.library("cells.c", REAL=real)
    for name, views in _KERNELS.items():
        getattr(library, name).argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] * views
    return library


def _cell(name: str, hidden_size: int, *views: torch.Tensor) -> None:
    """Run kernel ``name`` of cells.c on CPU views (E, B, width) of one dtype whose rows are contiguous.
    (Splitting a long probe's call over two threads was measured no faster: it is bound by memory.)"""
    first, args = views[0], []
    if len(views) != _KERNELS[name]:
        raise TypeError(f"{name} takes {_KERNELS[name]} views, got {len(views)}")
    for view in views:
        if view.stride(-1) != 1 or view.dtype != first.dtype or view.device.type != "cpu":
            raise ValueError(f"{name}: every view must be a {first.dtype} CPU tensor with contiguous rows")
        args += [view.data_ptr(), view.stride(0), view.stride(1)]
    getattr(_cells(first.dtype), name)(first.shape[0], first.shape[1], hidden_size, *args)


class _FusedRecurrence(torch.autograd.Function):
    """projected (E, T, B, G), weight_hh (E, H, G) -> hidden h (E, T, B, H), from zero state.

    States live in (E, T+1, B, H) buffers (step t's slice a strided batch, which a matmul reads at
    full speed), gates a matmul writes in (T, E, B, G) buffers (step t's slice contiguous). Between
    the matmuls of a step, one kernel of cells.c does all its elementwise work."""

    @staticmethod
    def forward(ctx, projected, weight_hh, kind):
        E, T, B, G = projected.shape
        H = weight_hh.shape[1]
        like = dict(device=projected.device, dtype=projected.dtype)
        hidden = torch.empty(E, T + 1, B, H, **like)
        hidden[:, 0] = 0
        if kind == "gru":
            u_rz, u_n = weight_hh[..., : 2 * H].contiguous(), weight_hh[..., 2 * H:].contiguous()
            rz, n = torch.empty(T, E, B, 2 * H, **like), torch.empty(T, E, B, H, **like)
            rh = torch.empty(E, T, B, H, **like)
            for t in range(T):
                h, p = hidden[:, t], projected[:, t]
                torch.baddbmm(p[..., : 2 * H], h, u_rz, out=rz[t])
                _cell("gru_gates", H, rz[t], h, rh[:, t])
                torch.baddbmm(p[..., 2 * H:], rh[:, t], u_n, out=n[t])
                _cell("gru_update", H, n[t], rz[t], h, hidden[:, t + 1])
            ctx.weights, saved = (u_rz, u_n), (rz, rh, n)
        elif kind == "lstm":
            gates, cells = torch.empty(T, E, B, G, **like), torch.empty(E, T + 1, B, H, **like)
            cells[:, 0] = 0
            tanh_c = torch.empty(T, E, B, H, **like)
            for t in range(T):
                torch.baddbmm(projected[:, t], hidden[:, t], weight_hh, out=gates[t])
                _cell("lstm_cell", H, gates[t], cells[:, t], cells[:, t + 1], tanh_c[t], hidden[:, t + 1])
            saved = (gates, cells, tanh_c)
        elif kind == "rnn":
            for t in range(T):
                _tanh(torch.baddbmm(projected[:, t], hidden[:, t], weight_hh), out=hidden[:, t + 1])
            saved = ()
        else:
            raise ValueError(f"no fused recurrence for {kind!r}; choose gru, lstm or rnn")
        ctx.kind, ctx.saved = kind, saved
        ctx.save_for_backward(weight_hh, hidden)
        return hidden[:, 1:]

    @staticmethod
    def backward(ctx, grad_out):
        weight_hh, hidden = ctx.saved_tensors
        kind, saved = ctx.kind, ctx.saved
        E, T1, B, H = hidden.shape
        T, G = T1 - 1, weight_hh.shape[-1]
        grad_out = grad_out.contiguous()  # autograd may pass an expanded gradient, which the kernels cannot read
        grad_projected = torch.empty(E, T, B, G, device=hidden.device, dtype=hidden.dtype)
        g = torch.zeros_like(hidden[:, 0])  # dL/dh carried back in time
        before = hidden[:, :-1].reshape(E, T * B, H).transpose(1, 2)  # every step's state before it
        if kind == "gru":
            (u_rz, u_n), (rz, rh, n) = ctx.weights, saved
            u_rz_t, u_n_t = u_rz.transpose(1, 2).contiguous(), u_n.transpose(1, 2).contiguous()
            d_rh = torch.empty_like(g)
            for t in reversed(range(T)):
                h, d = hidden[:, t], grad_projected[:, t]
                _cell("gru_back_update", H, g, grad_out[:, t], rz[t], n[t], h, d[..., H: 2 * H], d[..., 2 * H:])
                torch.bmm(d[..., 2 * H:], u_n_t, out=d_rh)
                _cell("gru_back_reset", H, g, d_rh, rz[t], h, d[..., :H])
                g = torch.baddbmm(g, d[..., : 2 * H], u_rz_t)
            flat = grad_projected.view(E, T * B, G)
            grad_weight = torch.cat([torch.bmm(before, flat[..., : 2 * H]),
                                     torch.bmm(rh.view(E, T * B, H).transpose(1, 2), flat[..., 2 * H:])], -1)
        else:
            weight_t = weight_hh.transpose(1, 2).contiguous()
            if kind == "lstm":
                gates, cells, tanh_c = saved
                gc = torch.zeros_like(g)  # dL/dc carried back in time
            for t in reversed(range(T)):
                d = grad_projected[:, t]
                if kind == "lstm":
                    _cell("lstm_back", H, g, grad_out[:, t], gc, gates[t], cells[:, t], tanh_c[t], d)
                else:
                    h_next = hidden[:, t + 1]
                    torch.mul(g + grad_out[:, t], 1 - h_next * h_next, out=d)
                g = torch.bmm(d, weight_t)
            grad_weight = torch.bmm(before, grad_projected.view(E, T * B, G))
        return grad_projected, grad_weight if ctx.needs_input_grad[1] else None, None


def inference_step(model: EnsembleRNN):
    """For long no-grad unrolls: (bias, step), where ``step(state, projected) -> state`` is ``model.recur``
    for inputs projected with ``bias`` instead of ``bias_ih``, and may overwrite ``projected``. On a CPU
    the weights are split once and the elementwise work of a step is one kernel, as in training on
    the fast path; the LSTM's and RNN's constant recurrent bias joins the projection's."""
    H, kind = model.hidden_size, fused_kind(model)
    if kind is None or model.weight_hh.device.type != "cpu":
        return model.bias_ih, model.recur
    weight = model.weight_hh.detach()
    u_rz, u_n = weight[..., : 2 * H].contiguous(), weight[..., 2 * H:].contiguous()

    @torch.no_grad()
    def step(state, projected):
        h = state[..., :H]
        if kind == "gru":
            rz, rh, out = torch.baddbmm(projected[..., : 2 * H], h, u_rz), torch.empty_like(h), torch.empty_like(h)
            _cell("gru_gates", H, rz, h, rh)
            _cell("gru_update", H, torch.baddbmm(projected[..., 2 * H:], rh, u_n), rz, h, out)
            return out
        gates = projected.baddbmm_(h, weight) if projected.is_contiguous() else torch.baddbmm(projected, h, weight)
        if kind == "rnn":
            return _tanh(gates)
        out = torch.empty_like(state)
        _cell("lstm_cell", H, gates, state[..., H:], out[..., H:], torch.empty_like(h), out[..., :H])
        return out

    bias = model.bias_ih if kind == "gru" else model.bias_ih + model.bias_hh
    return bias.detach(), step
