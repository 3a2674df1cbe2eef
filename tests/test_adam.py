"""Adam in TF1's form (memrnn.adam): the update equations of TensorFlow 1's AdamOptimizer, on every kernel."""
import math

import numpy as np
import pytest
import torch

from memrnn.adam import TF1Adam, make_adam
from memrnn.presets import make_config
from memrnn.train import Trainer

LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8


def _gradients(steps: int) -> np.ndarray:
    """Per step, gradients from 1e-10 (far below eps / sqrt(1 - b2), where the two forms differ most) to 1."""
    rng = np.random.default_rng(0)
    return np.stack([10.0 ** rng.uniform(-10, 0, 6) * rng.choice([-1, 1], 6) for _ in range(steps)])


def _tf1_numpy(w: np.ndarray, gradients: np.ndarray) -> list[np.ndarray]:
    """TF1's AdamOptimizer written out: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), w -= lr_t m / (sqrt(v) + eps)."""
    m, v, out = np.zeros_like(w), np.zeros_like(w), []
    for t, g in enumerate(gradients, 1):
        lr_t = LR * math.sqrt(1 - B2 ** t) / (1 - B1 ** t)
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        w = w - lr_t * m / (np.sqrt(v) + EPS)
        out.append(w)
    return out


def _run(optimizer_of, gradients: np.ndarray, dtype=torch.float64) -> list[np.ndarray]:
    w = torch.nn.Parameter(torch.ones(gradients.shape[1], dtype=dtype))
    optimizer, out = optimizer_of([w]), []
    for g in gradients:
        w.grad = torch.tensor(g, dtype=dtype)
        optimizer.step()
        out.append(w.detach().double().numpy().copy())
    return out


@pytest.mark.parametrize("fused", [None, True])
def test_tf1_adam_is_tf1s_update_equations(fused):
    """Known answer: five steps of TF1Adam (foreach and fused kernels) are TF1's equations, in float64."""
    gradients = _gradients(5)
    expected = _tf1_numpy(np.ones(6), gradients)
    for got, want in zip(_run(lambda p: make_adam(p, "tf1", LR, fused=fused), gradients), expected):
        np.testing.assert_allclose(got - 1, want - 1, rtol=1e-10, atol=0)


def test_torch_form_differs_from_tf1_where_gradients_are_small():
    """Known answer at step 1 (m = (1 - b1) g, v = (1 - b2) g^2): PyTorch's form moves a weight by
    lr g / (|g| + eps), TF1's by lr g / (|g| + eps / sqrt(1 - b2)); for g = 1e-10 TF1's step is 3% of
    PyTorch's, for g = 1 the two agree to 3e-7."""
    g = np.array([[1e-10, 1.0]])
    (tf1,), (plain,) = (_run(lambda p, form=form: make_adam(p, form, LR), g) for form in ("tf1", "torch"))
    np.testing.assert_allclose(1 - plain, LR * g[0] / (np.abs(g[0]) + EPS), rtol=1e-9)
    np.testing.assert_allclose(1 - tf1, LR * g[0] / (np.abs(g[0]) + EPS / math.sqrt(1 - B2)), rtol=1e-9)
    assert (1 - tf1[0]) / (1 - plain[0]) == pytest.approx(0.0319, abs=1e-4)


def test_float32_fused_tf1_adam_is_tf1s_equations_to_rounding():
    """The fast path's kernel (fused, float32) follows the same equations to float32 rounding."""
    gradients = _gradients(20)
    got = _run(lambda p: make_adam(p, "tf1", LR, fused=True), gradients, torch.float32)[-1]
    np.testing.assert_allclose(got - 1, _tf1_numpy(np.ones(6), gradients)[-1] - 1, rtol=1e-4, atol=1e-7)


def test_training_and_fine_tuning_use_the_configured_form():
    for fast in (False, True):
        assert type(Trainer.build(make_config("smoke", fast=fast)).optimizer) is TF1Adam
        assert type(Trainer.build(make_config("smoke", fast=fast, adam="torch")).optimizer) is torch.optim.Adam
    with pytest.raises(ValueError, match="adam='tf2' is not allowed; choose one of \\('tf1', 'torch'\\)"):
        make_config("smoke", adam="tf2")


def test_a_group_whose_parameters_took_different_steps_is_refused():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = TF1Adam([a, b], lr=LR)
    a.grad = torch.ones(2)
    optimizer.step()
    a.grad = b.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match=r"have taken \[0, 1\] steps"):
        optimizer.step()
