import math

import pytest
import torch
from scipy.optimize import brentq

from memrnn import store
from memrnn.data import make_synthetic
from memrnn.models import EnsembleRNN
from memrnn.presets import make_config
from memrnn.regularize import FINETUNE_FILE, Finetune, finetune, speed_penalty, tar_penalty
from memrnn.train import train


@pytest.fixture(scope="module")
def bank():
    return make_synthetic(n_train=100, n_test=100, seed=5)


def test_penalty_is_zero_at_exact_fixed_points(bank):
    model = EnsembleRNN("rnn", 1, bank.dim, 1)
    with torch.no_grad():
        for p in (model.weight_ih, model.bias_ih, model.bias_hh):
            p.zero_()
        model.weight_hh.fill_(2.0)
    h_star = brentq(lambda h: math.tanh(2 * h) - h, 0.5, 1.0)
    anchors = torch.tensor([[[h_star], [-h_star], [0.0]]])
    value = speed_penalty(model, anchors, bank, 10, torch.Generator().manual_seed(0))
    assert value.item() < 1e-12
    off = speed_penalty(model, anchors + 0.1, bank, 10, torch.Generator().manual_seed(0))
    assert off.item() > 1e-3


def test_penalty_equals_hand_computation_and_gradients_reach_weights_only(bank):
    model = EnsembleRNN("rnn", 2, bank.dim, 2, seeds=[1, 2])
    anchors = torch.tensor([[[0.3, -0.2]], [[0.1, 0.5]]], requires_grad=True)
    value = speed_penalty(model, anchors, bank, 3, torch.Generator().manual_seed(4))
    noise = torch.randn(2, 3, bank.dim, generator=torch.Generator().manual_seed(4)) * bank.noise_std + bank.noise_mean
    for e in range(2):
        total = 0.0
        for j in range(3):
            p = anchors[e, 0].detach()
            pre = noise[e, j] @ model.weight_ih[e, :-1] + model.bias_ih[e, 0] + p @ model.weight_hh[e] + model.bias_hh[e, 0]
            total += (torch.tanh(pre) - p).square().sum().item()
        assert value[e].item() == pytest.approx(total, rel=1e-5)
    value.sum().backward()
    assert model.weight_hh.grad is not None and model.weight_hh.grad.abs().sum() > 0
    assert model.weight_ih.grad.abs().sum() > 0
    assert anchors.grad is None or anchors.grad.abs().sum() == 0


def test_tar_penalty_by_hand():
    hidden = torch.tensor([[[[0.0], [1.0], [3.0]]]])  # (E=1, B=1, T=3, H=1)
    assert tar_penalty(0.5)(0, None, hidden).item() == pytest.approx(0.5 * (1 + 4) / 2)


def test_control_equals_plain_continued_training(tmp_path):
    parent = train(make_config("smoke", steps=40, checkpoint_every=20), tmp_path / "p", progress=False)
    control = finetune(parent, "control", steps=20, form="continue", progress=False)
    assert control.parent == parent.parent and control.name.startswith(parent.name + "--control-")
    # the same run trained 60 steps in one go, with the lr dropped from the same step (34, counted from 0)
    longer = train(make_config("smoke", steps=60, checkpoint_every=20, lr_drop_at=35 / 60), tmp_path / "c",
                   progress=False)
    a = store.load_checkpoint(control, 60)
    b = store.load_checkpoint(longer, 60)
    for key in (k for k in a if k.startswith(("model/", "optim/", "rng/"))):
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("mode", ["slowpoints", "centermass", "tar"])
def test_modes_change_the_weights_and_keep_the_record(tmp_path, mode):
    parent = train(make_config("smoke", steps=20, checkpoint_every=20), tmp_path, progress=False)
    control = finetune(parent, "control", steps=10, progress=False)
    run = finetune(parent, mode, lam=1.0, steps=10, relocate=5 if mode != "tar" else 0, progress=False)
    a, b = store.load_checkpoint(control, 30), store.load_checkpoint(run, 30)
    assert not torch.equal(a["model/weight_hh"], b["model/weight_hh"])
    summary = store.read_json(run / store.SUMMARY_FILE)
    assert summary["parent"] == parent.name and summary["finetune"]["mode"] == mode
    assert all(p > 0 for p in store.read_json(run / store.METRICS_FILE)[-1]["penalty"])
    assert finetune(parent, mode, lam=1.0, steps=10, relocate=5 if mode != "tar" else 0) == run  # cached


@pytest.mark.parametrize("adam", ["tf1", "torch"])
def test_reference_fine_tuning_starts_a_fresh_adam_at_the_initial_lr(tmp_path, adam):
    """Adam's first step from fresh moments moves every weight by lr g / (|g| + eps'): PyTorch's eps' = eps,
    so by lr wherever |g| >> 1e-8; TF1's eps' = eps / sqrt(1 - b2) = 3.2e-7, so by at most lr and by nearly
    lr wherever |g| >> 3e-7 (measured: median 0.977 lr). Carried moments or the final lr would move them
    otherwise."""
    config = make_config("smoke", steps=20, checkpoint_every=20, lr=1e-3, adam=adam)
    parent = train(config, tmp_path, progress=False)
    control = finetune(parent, "control", steps=1, progress=False)
    assert store.read_json(control / FINETUNE_FILE)["form"] == "reference"
    before, after = store.load_checkpoint(parent, 20), store.load_checkpoint(control, 21)
    moved = (after["model/weight_hh"] - before["model/weight_hh"]).abs()
    if adam == "torch":
        assert ((moved - 1e-3).abs() < 5e-5).float().mean() > 0.9  # all but weights with |g| ~ Adam's eps
    else:
        assert moved.max() <= 1e-3 * (1 + 1e-6) and 0.95e-3 < moved.median() < 1e-3
    assert store.read_json(control / store.METRICS_FILE)[-1]["lr"] == 1e-3
    carried = finetune(parent, "control", steps=1, form="continue", progress=False)
    moved = (store.load_checkpoint(carried, 21)["model/weight_hh"] - before["model/weight_hh"]).abs()
    assert ((moved - 1e-3).abs() < 5e-5).float().mean() < 0.5


def test_lstm_penalty_uses_tanh_c_by_hand(bank):
    """The reference's LSTM speed: ||h' - h||^2 + ||tanh c' - tanh c||^2, summed over noise frames."""
    model = EnsembleRNN("lstm", 1, bank.dim, 2, seeds=[3])
    anchors = torch.tensor([[[0.2, -0.1, 1.5, -2.0]]])
    value = speed_penalty(model, anchors, bank, 2, torch.Generator().manual_seed(1))
    noise = torch.randn(1, 2, bank.dim, generator=torch.Generator().manual_seed(1)) * bank.noise_std + bank.noise_mean
    total = 0.0
    for j in range(2):
        following = model.step(anchors, noise[:, j:j + 1], torch.zeros(1, 1))[0, 0]
        dh = following[:2] - anchors[0, 0, :2]
        dc = torch.tanh(following[2:]) - torch.tanh(anchors[0, 0, 2:])
        total += (dh.square().sum() + dc.square().sum()).item()
    assert value.item() == pytest.approx(total, rel=1e-5)
    raw = speed_penalty(model, anchors, bank, 2, torch.Generator().manual_seed(1), metric="state")
    assert raw.item() != pytest.approx(total, rel=1e-3)


def test_bad_mode():
    with pytest.raises(ValueError, match="unknown mode 'slow'"):
        Finetune("p", "slow", 1e-3, 10)


def test_run_names_follow_the_search_behind_the_anchors_and_the_form():
    # names are the fine-tunes' cache keys: stable for a spec, new whenever the slow-point search that
    # gave the anchors or the fine-tuning form changes
    assert Finetune("p", "control", 0.0, 10).name == Finetune("p", "control", 0.0, 10).name
    v2, v3 = (Finetune("p", "slowpoints", 1e-3, 10, anchors=f"reference-reference-reference-v{v}").name for v in (2, 3))
    assert v2 != v3 and v2 != Finetune("p", "slowpoints", 1e-3, 10, anchors="lm-reference-reference-v2").name
    assert Finetune("p", "control", 0.0, 10).name != Finetune("p", "control", 0.0, 10, form="continue").name
