"""Adam in the reference's form (TensorFlow 1's ``AdamOptimizer``) or PyTorch's.

Why: TF1 folds Adam's bias correction into the step size, lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), and
updates by lr_t m / (sqrt(v) + eps): its eps meets the raw sqrt(v). PyTorch divides by
sqrt(v / (1 - b2^t)) + eps, so its eps meets the corrected one. The two are one update when PyTorch's
eps is eps / sqrt(1 - b2^t) at step t (3.2e-7 at step 1 for eps = 1e-8, about 1e-8 by step 1,000), and
the first steps differ most where gradients are small: ``TF1Adam`` sets that eps before each step, so
the fused and foreach kernels of ``torch.optim.Adam`` run TF1's update.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

ADAMS = ("tf1", "torch")  # the reference's (TensorFlow 1) | PyTorch's


class TF1Adam(torch.optim.Adam):
    """``torch.optim.Adam`` with TF1's update: each group's eps (its ``tf1_eps``) divided by sqrt(1 - b2^t).

    TF1 counts steps once per optimizer, and so does this one per group: a group whose parameters have
    taken different numbers of steps (some had no gradient) is refused rather than given one count."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        for group in self.param_groups:
            group.setdefault("tf1_eps", group["eps"])

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            t = self._next_step(group)
            if t is not None:
                group["eps"] = group["tf1_eps"] / math.sqrt(1 - group["betas"][1] ** t)
        return super().step(closure)

    def _next_step(self, group) -> int | None:
        """The step this group is about to take (1 first), None when no parameter of it has a gradient."""
        taken = {int(self.state[p]["step"]) if "step" in self.state[p] else 0
                 for p in group["params"] if p.grad is not None}
        if len(taken) > 1:
            raise RuntimeError(f"TF1 Adam counts one step per group, but this group's parameters have taken "
                               f"{sorted(taken)} steps: put parameters that skip steps in a group of their own")
        return taken.pop() + 1 if taken else None


def make_adam(params: Iterable, form: str, lr: float, fused: bool | None = None) -> torch.optim.Adam:
    """Adam over ``params`` (tensors or parameter groups) in ``form``, one of ``ADAMS``."""
    if form not in ADAMS:
        raise ValueError(f"adam={form!r} is not allowed; choose one of {ADAMS}")
    return (TF1Adam if form == "tf1" else torch.optim.Adam)(params, lr=lr, fused=fused)
