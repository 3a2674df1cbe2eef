"""The CPU fast path: one autograd node for the whole recurrence, bf16 input projections.

Why: an eager training step of the ``cpu`` shape spends most of its time outside the input-projection
matmul: in 120 small recurrent matmuls, in per-step slices and copies of ``weight_hh`` and in
autograd's per-step gradient buffers. Here the unroll is one ``torch.autograd.Function``: the forward
keeps only the activated gates the backward needs, the backward walks back through time and stacks
every step's input gradient once, and the recurrent weight gradient is one matmul over all steps.
``weight_hh`` is split (and transposed for the backward) once per unroll, never per step. The input projection (frames x ``weight_ih``, forward and weight gradient) runs in bf16 with
fp32 accumulation (oneDNN on AVX512-BF16 / AMX); master weights, states and gates stay fp32.

The same equations as ``EnsembleRNN.recur`` (tested against it in float64). The torch-form GRU
(``cell="torch"``) keeps autograd's recurrence, with the bf16 projection. Slow-point searches and
Jacobians never use this module: they need fp32/fp64 derivatives of the exact map.
"""
from __future__ import annotations

import torch

from .models import EnsembleRNN

BF16 = torch.bfloat16


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh as 2 sigmoid(2x) - 1 (in place on a fresh tensor): ATen's CPU tanh costs about six of its
    sigmoids; this one's error is an absolute 1e-7 near 0 instead of a relative one."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


def project_bf16(model: EnsembleRNN, frames: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
    """``model.project`` with the pixel matmul in bf16: frames (E, N, D), trigger (E, N) -> (E, N, G) fp32."""
    features = frames if model.frontend is None else model.frontend(frames)
    projected = torch.bmm(features.to(BF16), model.weight_ih[:, :-1].to(BF16)).to(model.bias_ih.dtype)
    return projected.add_(model.bias_ih).addcmul_(trigger.unsqueeze(-1).to(projected.dtype), model.weight_ih[:, -1:])


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
    projected = project_bf16(model, frames.transpose(1, 2).reshape(E, T * B, D),
                             trigger.transpose(1, 2).reshape(E, T * B)).view(E, T, B, -1)
    kind = fused_kind(model)
    if kind is None:
        state, hiddens = model.init_state(B), []
        for step_input in projected.unbind(1):
            state = model.recur(state, step_input)
            hiddens.append(model.hidden(state))
        hidden = torch.stack(hiddens, 1)
    else:
        if kind != "gru":  # lstm / rnn: the recurrent bias is constant over time (zero and untrained in reference form)
            projected = projected + model.bias_hh.unsqueeze(1)
        hidden = _FusedRecurrence.apply(projected, model.weight_hh, kind)
    logits = torch.baddbmm(model.readout_bias, hidden.reshape(E, T * B, -1), model.readout_weight)
    logits = model._read(logits).view(E, T, B, -1).transpose(1, 2)
    return logits, hidden.transpose(1, 2)


class _FusedRecurrence(torch.autograd.Function):
    """projected (E, T, B, G), weight_hh (E, H, G) -> hidden h (E, T, B, H), from zero state.

    Every per-step tensor is contiguous: a strided output would make each batched matmul fall back
    to one small matmul per member."""

    @staticmethod
    def forward(ctx, projected, weight_hh, kind):
        E, T, B, G = projected.shape
        H = weight_hh.shape[1]
        h = torch.zeros(E, B, H, device=projected.device, dtype=projected.dtype)
        hs, saved = [h], []  # states before and after every step; per step what the backward needs
        if kind == "gru":
            u_rz, u_n = weight_hh[..., : 2 * H].contiguous(), weight_hh[..., 2 * H:].contiguous()
            for p in projected.unbind(1):
                rz = torch.baddbmm(p[..., : 2 * H], h, u_rz).sigmoid_()
                rh = rz[..., :H] * h
                n = _tanh(torch.baddbmm(p[..., 2 * H:], rh, u_n))
                h = torch.addcmul(h, rz[..., H:], n - h)
                hs.append(h)
                saved.append((rz, rh, n))
            ctx.weights = (u_rz, u_n)
        elif kind == "lstm":
            c = torch.zeros_like(h)
            for p in projected.unbind(1):
                gates = torch.baddbmm(p, h, weight_hh)
                gates[..., : 2 * H].sigmoid_()
                gates[..., 2 * H: 3 * H] = _tanh(gates[..., 2 * H: 3 * H])
                gates[..., 3 * H:].sigmoid_()
                i, f, g, o = gates.split(H, dim=-1)
                c_before, c = c, torch.addcmul(f * c, i, g)
                tanh_c = _tanh(c)
                h = o * tanh_c
                hs.append(h)
                saved.append((gates, c_before, tanh_c))
        elif kind == "rnn":
            for p in projected.unbind(1):
                h = _tanh(torch.baddbmm(p, h, weight_hh))
                hs.append(h)
        else:
            raise ValueError(f"no fused recurrence for {kind!r}; choose gru, lstm or rnn")
        ctx.kind, ctx.hs, ctx.saved = kind, hs, saved
        ctx.save_for_backward(weight_hh)
        return torch.stack(hs[1:], 1)

    @staticmethod
    def backward(ctx, grad_out):
        (weight_hh,) = ctx.saved_tensors
        kind, hs, saved = ctx.kind, ctx.hs, ctx.saved
        T, H = len(hs) - 1, weight_hh.shape[1]
        g = torch.zeros_like(hs[0])  # dL/dh carried back in time
        grads = [None] * T           # dL/d(projected input) per step
        if kind == "gru":
            u_rz, u_n = ctx.weights
            u_rz_t, u_n_t = u_rz.transpose(1, 2).contiguous(), u_n.transpose(1, 2).contiguous()
            d_rh_inputs = [None] * T
            for t in reversed(range(T)):
                g = g + grad_out[:, t]
                h, (rz, rh, n) = hs[t], saved[t]
                r, z = rz[..., :H], rz[..., H:]
                dn = g * z
                d_n = dn * (1 - n * n)
                d_rh = torch.bmm(d_n, u_n_t)
                d_rz = torch.cat([d_rh * h * r * (1 - r), g * (n - h) * z * (1 - z)], -1)
                g = torch.baddbmm(torch.addcmul(g - dn, d_rh, r), d_rz, u_rz_t)
                grads[t], d_rh_inputs[t] = d_rz, d_n
            d_rz, d_n = torch.stack(grads, 1), torch.stack(d_rh_inputs, 1)
            grad_projected = torch.cat([d_rz, d_n], -1)
            E, B = d_n.shape[0], d_n.shape[2]
            before = torch.stack(hs[:-1], 1).reshape(E, T * B, H).transpose(1, 2)
            rh = torch.stack([s[1] for s in saved], 1).reshape(E, T * B, H).transpose(1, 2)
            grad_weight = torch.cat([torch.bmm(before, d_rz.reshape(E, T * B, 2 * H)),
                                     torch.bmm(rh, d_n.reshape(E, T * B, H))], -1)
        else:
            weight_t = weight_hh.transpose(1, 2).contiguous()
            gc = torch.zeros_like(g)  # dL/dc carried back in time (LSTM)
            for t in reversed(range(T)):
                g = g + grad_out[:, t]
                if kind == "lstm":
                    gates, c_before, tanh_c = saved[t]
                    i, f, gg, o = gates.split(H, dim=-1)
                    gc = torch.addcmul(gc, g * o, 1 - tanh_c * tanh_c)
                    d_a = torch.cat([gc * gg * i * (1 - i), gc * c_before * f * (1 - f),
                                     gc * i * (1 - gg * gg), g * tanh_c * o * (1 - o)], -1)
                    gc = gc * f
                else:
                    d_a = g * (1 - hs[t + 1] * hs[t + 1])
                g = torch.bmm(d_a, weight_t)
                grads[t] = d_a
            grad_projected = torch.stack(grads, 1)
            E, _, B, G = grad_projected.shape
            before = torch.stack(hs[:-1], 1).reshape(E, T * B, H).transpose(1, 2)
            grad_weight = torch.bmm(before, grad_projected.reshape(E, T * B, G))
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
