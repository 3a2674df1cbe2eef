"""bf16 matmuls (memrnn.bf16): native and float32 executions are one arithmetic, to summation order."""
import os
import subprocess
import sys

import pytest
import torch

from memrnn import bf16, evaluate, fused
from memrnn.evaluate import accuracy_by_delay
from memrnn.models import EnsembleRNN
from memrnn.presets import make_config
from memrnn.train import Trainer

EXECUTIONS = ("native", "float32")


def _each_execution(monkeypatch, compute):
    """``compute()`` under each execution."""
    results = []
    for execution in EXECUTIONS:
        monkeypatch.setattr(bf16, "execution", lambda execution=execution: execution)
        results.append(compute())
    return results


def _ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in units of bf16's spacing at |b| (2^-7 relative, at least that of the tensor's scale / 2^16)."""
    scale = torch.maximum(b.float().abs(), b.float().abs().max() * 2.0 ** -16)
    return (a.float() - b.float()).abs() / (scale * 2.0 ** -7)


@pytest.mark.parametrize("op", ["bmm", "matmul"])
def test_both_executions_round_the_exact_product(monkeypatch, op):
    """Known answer: the product of bf16 operands, summed in float64 and rounded to bf16, is what either
    execution returns to within one bf16 step (their float32 sums differ only in order)."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(3, *shape, generator=g).to(bf16.BF16) for shape in ((64, 300), (300, 48)))
    exact = torch.matmul(a.double(), b.double()).to(bf16.BF16)
    native, emulated = _each_execution(monkeypatch, lambda: getattr(bf16, op)(a, b))
    out = torch.empty_like(native)
    assert getattr(bf16, op)(a, b, out=out) is out and torch.equal(out, emulated)  # into out: the same values
    for result in (native, emulated):
        assert result.dtype == bf16.BF16 and _ulps(result, exact).max() <= 1
    assert (native == exact).float().mean() > 0.99 and (emulated == exact).float().mean() > 0.99


def test_other_dtypes_are_left_to_torch(monkeypatch):
    """Only bf16 operands are widened: float64 (the tests' exact projection) keeps its precision."""
    monkeypatch.setattr(bf16, "execution", lambda: "float32")
    a, b = torch.randn(2, 5, 7, dtype=torch.float64), torch.randn(2, 7, 3, dtype=torch.float64)
    assert torch.equal(bf16.bmm(a, b), torch.bmm(a, b))


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_both_executions_train_alike(monkeypatch, arch):
    """The fast unroll's logits, hidden states and every gradient agree between the two executions to
    summation order (2e-4 in norm; measured at most 3e-5, where bf16 against float32 is 3e-3), and the two
    did run differently."""
    model = EnsembleRNN(arch, 2, 784, 32, seeds=[0, 1])
    g = torch.Generator().manual_seed(0)
    frames = 0.3 * torch.randn(2, 8, 20, 784, generator=g) + 0.13
    trigger = torch.zeros(2, 8, 20)
    trigger[:, :, 10] = 1
    params = [p for p in model.parameters() if p.requires_grad]

    def compute():
        logits, hidden = fused.unroll(model, frames, trigger)
        return [logits, hidden, *torch.autograd.grad(logits.sin().sum() + hidden.cos().sum(), params)]

    native, emulated = _each_execution(monkeypatch, compute)
    for a, b in zip(native, emulated):
        assert (a - b).norm() <= 2e-4 * b.norm()
    assert not all(torch.equal(a, b) for a, b in zip(native, emulated))


@pytest.mark.parametrize("mode", ["projected", "pixels"])
def test_both_executions_probe_alike(monkeypatch, mode):
    """The fast probe's projected noise frames agree to bf16 rounding, and so do its answers (a flip needs
    a near tie: at most 2% of member-trial-delays)."""
    trainer = Trainer.build(make_config("smoke", hidden_size=16))
    if mode == "pixels":
        monkeypatch.setattr(evaluate, "NORMAL_COST", float("inf"))
    assert evaluate.FastNoise(trainer.model, trainer.bank).mode == mode

    def compute():
        source = evaluate.FastNoise(trainer.model, trainer.bank)
        frames = torch.stack([f.clone() for f in source.frames(8, 20, torch.Generator().manual_seed(0))])
        answers = accuracy_by_delay(trainer.model, trainer.bank, [4, 30], 100, fast=True)
        return frames, answers.overall

    (native, native_answers), (emulated, emulated_answers) = _each_execution(monkeypatch, compute)
    assert _ulps(emulated, native).max() <= 1
    assert (native_answers - emulated_answers).abs().max() <= 0.02


def _execution_in_a_new_process(**environment) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from memrnn import bf16; print(bf16.execution())"],
                          env={**os.environ, **environment}, capture_output=True, text=True)


def test_execution_is_detected_and_can_be_forced():
    """oneDNN capped below bf16 (as on a CPU with AVX2 only) runs float32; either execution can be forced;
    a bad value is refused naming it."""
    capped = _execution_in_a_new_process(ONEDNN_MAX_CPU_ISA="AVX2", MEMRNN_BF16="")
    assert capped.stdout.strip() == "float32", capped.stderr
    for execution in EXECUTIONS:
        assert _execution_in_a_new_process(MEMRNN_BF16=execution).stdout.strip() == execution
    bad = _execution_in_a_new_process(MEMRNN_BF16="fp8")
    assert bad.returncode and "MEMRNN_BF16='fp8' is not allowed; choose one of ('native', 'float32')" in bad.stderr


def test_describe_names_the_capability_and_the_execution():
    text = bf16.describe()
    assert torch.backends.cpu.get_cpu_capability() in text
    assert ("bf16 matmuls native" if bf16.execution() == "native" else "bf16 matmuls as float32") in text
