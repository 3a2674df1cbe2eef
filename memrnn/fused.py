"""The CPU fast path: one autograd node for the whole recurrence, bf16 input projections.

Why: an eager training step of the ``cpu`` shape spends most of its time outside the input-projection
matmul: in per-step slices and copies of ``weight_hh``, in autograd's per-step gradient buffers, in
the stacking of per-step results and in a dozen small elementwise operations per step. Here the
projection is one autograd node (frames with the trigger and a constant 1 appended, a matrix the
fast path's sampler draws directly; one bf16 matmul forward and one for the weight gradient, fp32
accumulation, on oneDNN's AVX512-BF16 / AMX kernels or as float32 matmuls where the CPU has neither
(``memrnn.bf16``), fp32 master weights) and the unroll is another, whose whole forward and whole
backward through time are each one call of ``cells.c`` (compiled at first use, ``memrnn.native``):
there each step's small recurrent matmuls are register-tiled and followed at once by the step's
elementwise work, members shared out over torch's OpenMP threads.
States and activated gates live in preallocated buffers, weights are split, padded and transposed
once per unroll, and the recurrent weight gradient is one matmul over all steps.

The same equations as ``EnsembleRNN.recur`` (tested against it in float64). The torch-form GRU
(``cell="torch"``) keeps autograd's recurrence, with the bf16 projection. Slow-point searches and
Jacobians never use this module: they need fp32/fp64 derivatives of the exact map.
"""
from __future__ import annotations

import ctypes
from functools import lru_cache

import torch
from torch.nn import functional as F

from . import bf16, native
from .models import EnsembleRNN

BF16 = torch.bfloat16


def _tanh(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """tanh as 2 sigmoid(2x) - 1: ATen's CPU tanh costs about six of its sigmoids; this one's error is
    an absolute 1e-7 near 0 instead of a relative one."""
    return torch.sigmoid(x * 2, out=out).mul_(2).sub_(1)


class _Projection(torch.autograd.Function):
    """features (E, N, D), trigger (E, N), weight_ih (E, D+1, G), bias (E, 1, G) -> (E, N, G) in bf16, as
    the matmul wrote it: one bf16 matmul of the features with the trigger and a constant 1 appended, so the
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
        ctx.dtype = weight.dtype
        return bf16.bmm(inputs, weight_low)

    @staticmethod
    def backward(ctx, grad):
        inputs, weight_low = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_low, dtype = grad.to(BF16), ctx.dtype
        grad_features = bf16.bmm(grad_low, weight_low[:, :-2].transpose(1, 2)).to(dtype) if needs[0] else None
        rows = bf16.bmm(inputs.transpose(1, 2), grad_low) if needs[2] or needs[3] else None
        # each gradient cast from its bf16 rows straight into a contiguous tensor, which autograd keeps as it is
        return (grad_features, None, rows[:, :-1].to(dtype) if needs[2] else None,
                rows[:, -1:].to(dtype) if needs[3] else None, None)


def project(model: EnsembleRNN, frames: torch.Tensor, trigger: torch.Tensor, bias: torch.Tensor,
            inputs: torch.Tensor | None = None) -> torch.Tensor:
    """``model.project`` with the pixel matmul in bf16 and ``bias`` for ``bias_ih``: frames (E, N, D),
    trigger (E, N) -> (E, N, G) in bf16; ``inputs``, the sampler's projection matrix, serves a model without a
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
        for step_input in projected.to(model.weight_hh.dtype).unbind(1):
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


# the functions of cells.c and how many buffers each takes after its sizes (E, T, B, H), or (E, B, H) for a
# step; a step takes its state and frame, the frame's row and member strides, a flag (the frame is bf16), then
# this many more (bias, extra, ...)
_UNROLLS = {"gru_forward": 7, "gru_backward": 7, "lstm_forward": 6, "lstm_backward": 6}
_STEPS = {"gru_step": 8, "lstm_step": 6}


@lru_cache(maxsize=None)
def _cells(dtype: torch.dtype) -> ctypes.CDLL:
    real = {torch.float32: "float", torch.float64: "double"}.get(dtype)
    if real is None:
        raise ValueError(f"the fused recurrence runs in float32 or float64, not {dtype}")
    library = native.library("cells.c", REAL=real)
    for name, buffers in _UNROLLS.items():  # a forward's flag (its projected inputs are bf16) comes after the sizes
        getattr(library, name).argtypes = [ctypes.c_int64] * 4 + [ctypes.c_int] * name.endswith("forward") + \
            [ctypes.c_void_p] * buffers
        getattr(library, name).restype = ctypes.c_int if name.endswith("backward") else None
    for name, buffers in _STEPS.items():
        getattr(library, name).argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2 + \
            [ctypes.c_int] + [ctypes.c_void_p] * buffers
    library.lanes.restype = ctypes.c_int64
    return library


def _run(name: str, sizes: tuple[int, ...], *buffers: torch.Tensor) -> None:
    """Run ``name`` of cells.c for these sizes on contiguous CPU buffers of one dtype, a forward's first
    (its projected inputs) in that dtype or bf16 (members shared out over torch's OpenMP threads, each
    member's arithmetic the same on any of them)."""
    dtype, flags = buffers[-1].dtype, ()
    if name.endswith("forward"):
        flags = (int(buffers[0].dtype == torch.bfloat16),)
    for buffer in buffers:
        allowed = (dtype, torch.bfloat16) if flags and buffer is buffers[0] else (dtype,)
        if not buffer.is_contiguous() or buffer.dtype not in allowed or buffer.device.type != "cpu":
            raise ValueError(f"{name}: every buffer must be a contiguous {dtype} CPU tensor (a forward's inputs "
                             f"may be bf16); got a {buffer.dtype} one of shape {tuple(buffer.shape)}")
    if getattr(_cells(dtype), name)(*sizes, *flags, *(buffer.data_ptr() for buffer in buffers)):
        raise MemoryError(f"{name}: no memory for its scratch rows (batch {sizes[-2]}, hidden size {sizes[-1]})")


def _padded(weight: torch.Tensor) -> torch.Tensor:
    """weight (E, K, N) with zero columns up to a whole number of the C kernels' vectors, contiguous."""
    lanes = _cells(weight.dtype).lanes()
    return F.pad(weight, (0, -weight.shape[-1] % lanes)).contiguous()


class _FusedRecurrence(torch.autograd.Function):
    """projected (E, T, B, G) in bf16, weight_hh (E, H, G) -> hidden h (E, T, B, H), from zero state.

    The whole unroll, forward or backward, is one call of cells.c, which reads the projection where the
    bf16 matmul wrote it; the states and activated gates it saves live in preallocated (E, T, B, width)
    buffers, and the recurrent weight gradient is one bf16 matmul over all steps (fp32 accumulation), of
    the bf16 input gradient that the projection's backward takes too."""

    @staticmethod
    def forward(ctx, projected, weight_hh, kind):
        E, T, B, G = projected.shape
        H = weight_hh.shape[1]
        like = dict(device=projected.device, dtype=weight_hh.dtype)
        projected = projected.contiguous()
        hidden = torch.empty(E, T + 1, B, H, **like)
        hidden[:, 0] = 0
        shape = (E, T, B, H)
        if kind == "gru":
            u_rz, u_n = _padded(weight_hh[..., : 2 * H]), _padded(weight_hh[..., 2 * H:])
            rz, n = torch.empty(E, T, B, u_rz.shape[-1], **like), torch.empty(E, T, B, u_n.shape[-1], **like)
            rh = torch.empty(E, T, B, H, **like)
            _run("gru_forward", shape, projected, u_rz, u_n, hidden, rz, rh, n)
            saved = (rz, rh, n)
        elif kind == "lstm":
            u = _padded(weight_hh)
            cells, gates = torch.empty(E, T + 1, B, H, **like), torch.empty(E, T, B, u.shape[-1], **like)
            cells[:, 0] = 0
            tanh_c = torch.empty(E, T, B, H, **like)
            _run("lstm_forward", shape, projected, u, hidden, cells, gates, tanh_c)
            saved = (cells, gates, tanh_c)
        elif kind == "rnn":
            projected = projected.to(weight_hh.dtype)
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
        shape = (E, T, B, H)
        grad_out = grad_out.contiguous()  # autograd may pass an expanded gradient, which the kernels cannot read
        grad_projected = torch.empty(E, T, B, G, device=hidden.device, dtype=hidden.dtype)
        if kind == "gru":
            rz, rh, n = saved
            u_rz_t, u_n_t = (_padded(weight_hh[..., columns].transpose(1, 2)) for columns in
                             (slice(0, 2 * H), slice(2 * H, None)))
            _run("gru_backward", shape, grad_out, hidden, rz, n, u_rz_t, u_n_t, grad_projected)
        elif kind == "lstm":
            cells, gates, tanh_c = saved
            _run("lstm_backward", shape, grad_out, cells, gates, tanh_c, _padded(weight_hh.transpose(1, 2)),
                 grad_projected)
        else:
            weight_t, g = weight_hh.transpose(1, 2).contiguous(), torch.zeros_like(hidden[:, 0])
            for t in reversed(range(T)):
                h_next = hidden[:, t + 1]
                torch.mul(g + grad_out[:, t], 1 - h_next * h_next, out=grad_projected[:, t])
                g = torch.bmm(grad_projected[:, t], weight_t)
        grad_low = grad_projected.to(BF16)
        if not ctx.needs_input_grad[1]:
            return grad_low, None, None
        # each step's state before it (for the GRU's candidate rows: r h), times the gradient at that step
        before = hidden[:, :-1].reshape(E, T * B, H).to(BF16).transpose(1, 2)
        flat = grad_low.view(E, T * B, G)
        if kind == "gru":
            reset = rh.view(E, T * B, H).to(BF16).transpose(1, 2)
            grad_weight = torch.cat([bf16.bmm(before, flat[..., : 2 * H]), bf16.bmm(reset, flat[..., 2 * H:])], -1)
        else:
            grad_weight = bf16.bmm(before, flat)
        return grad_low, grad_weight.to(weight_hh.dtype), None


def inference_step(model: EnsembleRNN, offset: torch.Tensor | None = None):
    """For long no-grad unrolls: ``step(state, frame, extra=None) -> state``, ``model.recur`` for the input
    whose projection without bias is ``frame`` (B, E, G), in bf16 or the model's dtype, with any strides
    but a contiguous last axis: one matmul of a batch of inputs with every member's weights gives it so.
    The step adds the biases and ``offset`` (an (E, 1, G) constant such as the projected mean of centred
    noise frames), then ``extra`` (an (E, 1, G) row such as the trigger's), as (frame + bias) + extra. On a
    CPU a GRU or LSTM step of every member is one call of cells.c, which reads the frame where it lies;
    the LSTM's and RNN's constant recurrent bias joins the projection's."""
    H, kind = model.hidden_size, fused_kind(model)
    weight, dtype, on_cpu = model.weight_hh.detach(), model.weight_hh.dtype, model.weight_hh.device.type == "cpu"
    offset = 0 if offset is None else offset.to(dtype)
    if kind not in ("gru", "lstm") or not on_cpu:
        if kind == "rnn" and on_cpu:
            bias, recur = (model.bias_ih + model.bias_hh).detach() + offset, lambda state, projected: _tanh(
                torch.baddbmm(projected, state, weight))
        else:
            bias, recur = model.bias_ih.detach() + offset, model.recur

        def step(state, frame, extra=None):
            projected = frame.transpose(0, 1).to(dtype) + bias
            return recur(state, projected if extra is None else projected + extra)

        return step
    bias = ((model.bias_ih if kind == "gru" else model.bias_ih + model.bias_hh).detach() + offset).contiguous()
    padded = (_padded(weight[..., : 2 * H]), _padded(weight[..., 2 * H:])) if kind == "gru" else (_padded(weight),)
    scratch = {}  # the step's gate buffers, kept from step to step: fresh megabytes each step cost page faults

    @torch.no_grad()
    def step(state, frame, extra=None):
        B, E, G = frame.shape
        if frame.dtype not in (torch.bfloat16, dtype) or state.dtype != dtype or (E, 1, G) != bias.shape or \
                state.shape != (E, B, model.state_size):
            raise ValueError(f"the {kind} step takes a (B, {bias.shape[0]}, {bias.shape[-1]}) frame in bf16 or {dtype} "
                             f"and a {dtype} state (E, B, {model.state_size}); got a {frame.dtype} frame "
                             f"{tuple(frame.shape)} and a {state.dtype} state {tuple(state.shape)}")
        state, out = state.contiguous(), torch.empty_like(state)
        frame = frame if frame.stride(-1) == 1 else frame.contiguous()
        extra = None if extra is None else extra.to(dtype).expand_as(bias).contiguous()
        if (E, B) not in scratch:
            widths = (padded[0].shape[-1], H, padded[-1].shape[-1])[: 3 if kind == "gru" else 2]
            scratch.clear()
            scratch[E, B] = [torch.empty(E, B, width, dtype=dtype) for width in widths]
        getattr(_cells(dtype), f"{kind}_step")(
            E, B, H, state.data_ptr(), frame.data_ptr(), frame.stride(0), frame.stride(1),
            int(frame.dtype == torch.bfloat16), bias.data_ptr(), None if extra is None else extra.data_ptr(),
            *(buffer.data_ptr() for buffer in (*padded, out, *scratch[E, B])))
        return out

    return step
