"""The CPU fast path: one autograd node for the whole recurrence, bf16 input projections.

Why: an eager training step of the ``cpu`` shape spends most of its time outside the input-projection
matmul: in per-step slices and copies of ``weight_hh``, in autograd's per-step gradient buffers and
in the stacking of per-step results. Here the projection is one autograd node (frames with the
trigger and a constant 1 appended, one bf16 matmul forward and one for the weight gradient, fp32 accumulation on
oneDNN's AVX512-BF16 / AMX kernels, fp32 master weights) and the unroll is another: the forward
writes every step's states and activated gates into preallocated buffers, the backward walks back
through time writing every step's input gradient into one buffer, and the recurrent weight
gradient is one matmul over all steps. ``weight_hh`` is split (and transposed for the backward)
once per unroll, never per step. Every matmul output is contiguous: a strided one makes a batched
matmul fall back to one small matmul per member.

The same equations as ``EnsembleRNN.recur`` (tested against it in float64). The torch-form GRU
(``cell="torch"``) keeps autograd's recurrence, with the bf16 projection. Slow-point searches and
Jacobians never use this module: they need fp32/fp64 derivatives of the exact map.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

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
    gradient (no separate terms, no sliced weight whose gradient would be a zero-filled copy)."""

    @staticmethod
    def forward(ctx, features, trigger, weight, bias):
        E, N, D = features.shape
        inputs = torch.empty(E, N, D + 2, dtype=BF16, device=features.device)
        inputs[..., :D] = features
        inputs[..., D] = trigger
        inputs[..., D + 1] = 1
        weight_low = torch.cat([weight, bias], 1).to(BF16)
        ctx.save_for_backward(inputs, weight_low)
        return torch.bmm(inputs, weight_low).to(bias.dtype)

    @staticmethod
    def backward(ctx, grad):
        inputs, weight_low = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_low = grad.to(BF16)
        grad_features = torch.bmm(grad_low, weight_low[:, :-2].transpose(1, 2)).to(grad.dtype) if needs[0] else None
        grad_rows = torch.bmm(inputs.transpose(1, 2), grad_low).to(grad.dtype) if needs[2] or needs[3] else None
        return grad_features, None, grad_rows[:, :-1] if needs[2] else None, grad_rows[:, -1:] if needs[3] else None


def project(model: EnsembleRNN, frames: torch.Tensor, trigger: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``model.project`` with the pixel matmul in bf16 and ``bias`` for ``bias_ih``: frames (E, N, D),
    trigger (E, N) -> (E, N, G)."""
    features = frames if model.frontend is None else model.frontend(frames)
    return _Projection.apply(features, trigger, model.weight_ih, bias)


def fused_kind(model: EnsembleRNN) -> str | None:
    """Which fused recurrence serves this model (None: autograd's)."""
    if model.arch == "gru":
        return "gru" if model.cell == "reference" else None
    return model.arch


def unroll(model: EnsembleRNN, frames: torch.Tensor, trigger: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (E, B, T, O) and hidden states (E, B, T, H) from zero state, as ``model(..., return_hidden=True)``.

    frames (E, B, T, D) and trigger (E, B, T); frames laid out time-major underneath (``frames.transpose(1, 2)``
    contiguous, as ``TrialSampler`` draws them on the fast path) are projected without a copy."""
    E, B, T, D = frames.shape
    kind = fused_kind(model)
    # lstm / rnn: the recurrent bias is constant over time, so it joins the projection's bias
    bias = model.bias_ih if kind in (None, "gru") else model.bias_ih + model.bias_hh
    projected = project(model, frames.transpose(1, 2).reshape(E, T * B, D),
                        trigger.transpose(1, 2).reshape(E, T * B), bias).view(E, T, B, -1)
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


class _FusedRecurrence(torch.autograd.Function):
    """projected (E, T, B, G), weight_hh (E, H, G) -> hidden h (E, T, B, H), from zero state.

    States live in (E, T+1, B, H) buffers (step t's slice a strided batch, which a matmul reads at
    full speed), gates a matmul writes in (T, E, B, G) buffers (step t's slice contiguous)."""

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
                torch.baddbmm(p[..., : 2 * H], h, u_rz, out=rz[t]).sigmoid_()
                torch.mul(rz[t, ..., :H], h, out=rh[:, t])
                _tanh(torch.baddbmm(p[..., 2 * H:], rh[:, t], u_n), out=n[t])
                torch.addcmul(h, rz[t, ..., H:], n[t] - h, out=hidden[:, t + 1])
            ctx.weights, saved = (u_rz, u_n), (rz, rh, n)
        elif kind == "lstm":
            gates, cells = torch.empty(T, E, B, G, **like), torch.empty(E, T + 1, B, H, **like)
            cells[:, 0] = 0
            tanh_c = torch.empty(T, E, B, H, **like)
            for t in range(T):
                a = torch.baddbmm(projected[:, t], hidden[:, t], weight_hh, out=gates[t])
                a[..., 2 * H: 3 * H].mul_(2)  # the g gate's tanh, as 2 sigmoid(2x) - 1 inside one sigmoid
                a.sigmoid_()
                a[..., 2 * H: 3 * H].mul_(2).sub_(1)
                i, f, g, o = a.split(H, dim=-1)
                c = torch.addcmul(f * cells[:, t], i, g, out=cells[:, t + 1])
                _tanh(c, out=tanh_c[t])
                torch.mul(o, tanh_c[t], out=hidden[:, t + 1])
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
        grad_projected = torch.empty(E, T, B, G, device=hidden.device, dtype=hidden.dtype)
        g = torch.zeros_like(hidden[:, 0])  # dL/dh carried back in time
        before = hidden[:, :-1].reshape(E, T * B, H).transpose(1, 2)  # every step's state before it
        if kind == "gru":
            (u_rz, u_n), (rz, rh, n) = ctx.weights, saved
            u_rz_t, u_n_t = u_rz.transpose(1, 2).contiguous(), u_n.transpose(1, 2).contiguous()
            for t in reversed(range(T)):
                g = g + grad_out[:, t]
                h, r, z, n_t, d = hidden[:, t], rz[t, ..., :H], rz[t, ..., H:], n[t], grad_projected[:, t]
                dn = g * z
                d_n = torch.mul(dn, 1 - n_t * n_t, out=d[..., 2 * H:])
                d_rh = torch.bmm(d_n, u_n_t)
                torch.mul(d_rh * h, r * (1 - r), out=d[..., :H])
                torch.mul(g * (n_t - h), z * (1 - z), out=d[..., H: 2 * H])
                g = torch.baddbmm(torch.addcmul(g - dn, d_rh, r), d[..., : 2 * H], u_rz_t)
            flat = grad_projected.view(E, T * B, G)
            grad_weight = torch.cat([torch.bmm(before, flat[..., : 2 * H]),
                                     torch.bmm(rh.view(E, T * B, H).transpose(1, 2), flat[..., 2 * H:])], -1)
        else:
            weight_t = weight_hh.transpose(1, 2).contiguous()
            if kind == "lstm":
                gates, cells, tanh_c = saved
                gc = torch.zeros_like(g)  # dL/dc carried back in time
            for t in reversed(range(T)):
                g = g + grad_out[:, t]
                d = grad_projected[:, t]
                if kind == "lstm":
                    (i, f, gg, o), tc = gates[t].split(H, dim=-1), tanh_c[t]
                    gc = torch.addcmul(gc, g * o, 1 - tc * tc)
                    torch.mul(gc * gg, i * (1 - i), out=d[..., :H])
                    torch.mul(gc * cells[:, t], f * (1 - f), out=d[..., H: 2 * H])
                    torch.mul(gc * i, 1 - gg * gg, out=d[..., 2 * H: 3 * H])
                    torch.mul(g * tc, o * (1 - o), out=d[..., 3 * H:])
                    gc = gc * f
                else:
                    h_next = hidden[:, t + 1]
                    torch.mul(g, 1 - h_next * h_next, out=d)
                g = torch.bmm(d, weight_t)
            grad_weight = torch.bmm(before, grad_projected.view(E, T * B, G))
        return grad_projected, grad_weight if ctx.needs_input_grad[1] else None, None


def inference_step(model: EnsembleRNN):
    """``model.recur`` without autograd for long no-grad unrolls: (state, projected) -> state, weights
    split once, tanh as in training on the fast path."""
    H, kind = model.hidden_size, fused_kind(model)
    if kind is None:
        return model.recur
    weight = model.weight_hh.detach()
    u_rz, u_n = weight[..., : 2 * H].contiguous(), weight[..., 2 * H:].contiguous()
    bias = model.bias_hh.detach()

    @torch.no_grad()
    def step(state, projected):
        h = state[..., :H]
        if kind == "gru":
            rz = torch.baddbmm(projected[..., : 2 * H], h, u_rz).sigmoid_()
            n = _tanh(torch.baddbmm(projected[..., 2 * H:], rz[..., :H] * h, u_n))
            return torch.addcmul(h, rz[..., H:], n - h)
        gates = torch.baddbmm(projected + bias, h, weight)
        if kind == "rnn":
            return _tanh(gates)
        i, f, o = (torch.sigmoid(gates[..., k * H: (k + 1) * H]) for k in (0, 1, 3))
        c = torch.addcmul(f * state[..., H:], i, _tanh(gates[..., 2 * H: 3 * H]))
        return torch.cat([o * _tanh(c), c], -1)

    return step
