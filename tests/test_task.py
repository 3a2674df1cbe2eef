import numpy as np
import pytest
import torch
from scipy import stats
from torch.nn import functional as F

from memrnn.data import ImageBank, make_synthetic
from memrnn.task import TaskSpec, TrialSampler, mask_inactive, report_accuracy, trial_loss


@pytest.fixture(scope="module")
def bank():
    return make_synthetic(n_train=300, n_test=100, seed=1)


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_trial_structure_follows_reference(bank):
    spec = TaskSpec()
    batch = TrialSampler(bank, spec).sample(_gens(0, 1), 2000, t_max=14, n_active=10)
    t_s, t_r = batch.stimulus_time, batch.report_time
    assert t_s.min() == 0 and t_s.max() == 14 - 4 - 1
    assert ((t_r - t_s) >= 4).all() and t_r.max() == 13
    # stimulus time is uniform over its range
    counts = torch.bincount(t_s.flatten(), minlength=10).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    # given t_s, report time is uniform over t_s+4 .. 13
    sel = t_s == 0
    counts = torch.bincount(t_r[sel] - 4, minlength=10).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    E, B, T = batch.targets.shape
    assert (E, B, T) == (2, 2000, 20)
    steps = torch.arange(T)
    report = steps == t_r[..., None]
    assert torch.equal(batch.trigger.bool(), report)
    assert torch.equal(batch.targets, torch.where(report, batch.labels[..., None] + 1, 0))
    expected_w = torch.where(report, 20.0, torch.where(steps < 14, 1.0, 0.0))
    assert torch.equal(batch.weights, expected_w)


def test_frames_are_image_then_noise_with_dataset_statistics(bank):
    batch = TrialSampler(bank, TaskSpec()).sample(_gens(3), 500, t_max=20, n_active=10)
    frames, t_s = batch.frames[0], batch.stimulus_time[0]
    shown = frames[torch.arange(500), t_s]
    # each stimulus frame is a clean training image of the labelled class
    match = (shown[:, None, :] == bank.train_images[None]).all(-1)
    assert match.any(1).all()
    first = match.float().argmax(1)
    assert torch.equal(bank.train_labels[first], batch.labels[0])
    noise_mask = torch.ones(500, 20, dtype=torch.bool)
    noise_mask[torch.arange(500), t_s] = False
    noise = frames[noise_mask]
    assert abs(noise.mean().item() - bank.noise_mean) < 0.01
    assert abs(noise.std().item() - bank.noise_std) < 0.01


def test_vocabulary_mask_and_active_classes(bank):
    batch = TrialSampler(bank, TaskSpec()).sample(_gens(5), 400, t_max=20, n_active=3)
    assert set(batch.labels.unique().tolist()) == {0, 1, 2}
    logits = torch.zeros(1, 1, 1, 11)
    masked = mask_inactive(logits, 3, "linear")
    assert torch.isinf(masked[..., 4:]).all() and torch.isfinite(masked[..., :4]).all()
    outputs = torch.full((1, 1, 1, 11), 0.5)  # sigmoid outputs: the reference multiplies inactive ones by -1000
    masked = mask_inactive(outputs, 3, "sigmoid-softmax")
    assert (masked[..., 4:] == -500).all() and (masked[..., :4] == 0.5).all()
    with pytest.raises(ValueError, match="T_max=3"):
        TrialSampler(bank, TaskSpec()).sample(_gens(0), 4, t_max=3, n_active=10)


def test_member_streams_are_independent_and_deterministic(bank):
    sampler = TrialSampler(bank, TaskSpec())
    a = sampler.sample(_gens(7, 8), 16, 20, 10)
    b = sampler.sample(_gens(8), 16, 20, 10)
    assert torch.equal(a.frames[1], b.frames[0]) and torch.equal(a.labels[1], b.labels[0])
    assert not torch.equal(a.frames[0], a.frames[1])


def test_reference_loss_is_its_formula(bank):
    """The reference: -mean over (batch, 11 outputs, 20 frames) of (t_max - 1) Z Y log p + Y log p, with
    p = softmax over outputs of sigmoid outputs times W (1 for active outputs, -1000 for the rest)."""
    batch = TrialSampler(bank, TaskSpec()).sample(_gens(3), 4, t_max=14, n_active=5)
    outputs = torch.sigmoid(torch.randn(1, 4, 20, 11, generator=torch.Generator().manual_seed(1)))
    B, T, O, n_active = 4, 20, 11, 5
    Y = np.zeros((B, O, T))
    Z = np.zeros((B, O, T))
    W = np.where(np.arange(O) < n_active + 1, 1.0, -1000.0)[None, :, None] * np.ones((B, O, T))
    for b in range(B):
        Y[b, 0, :14] = 1
        t_r, label = int(batch.report_time[0, b]), int(batch.labels[0, b])
        Y[b, :, t_r] = 0
        Y[b, label + 1, t_r] = 1
        Z[b, : n_active + 1, t_r] = 1
    logits = outputs[0].permute(0, 2, 1).double().numpy() * W
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -np.mean((20 - 1) * Z * Y * log_p + Y * log_p)
    assert np.isclose(trial_loss(outputs, batch).item(), expected, rtol=1e-5)


def test_class_sampling_reference_and_ours():
    """Reference: class uniform, then an image among the smallest class's count; ours: image uniform."""
    labels = torch.tensor([0] * 60 + [1] * 20 + [2] * 20)
    images = torch.arange(100).float()[:, None].expand(100, 4).contiguous()
    bank = ImageBank("toy", images, labels, images[:10], labels[:10], (1, 2, 2), 0.0, 1.0, "test", n_classes=3)
    counts = {}
    for sampling in ("class", "image"):
        spec = TaskSpec(n_classes=3, class_sampling=sampling)
        batch = TrialSampler(bank, spec).sample(_gens(1), 6000, t_max=20, n_active=3)
        counts[sampling] = np.bincount(batch.labels[0].numpy(), minlength=3)
        shown = batch.frames[0, torch.arange(6000), batch.stimulus_time[0], 0].long()
        assert torch.equal(labels[shown], batch.labels[0])  # the image shown is of the label's class
        if sampling == "class":  # only the first 20 images of class 0 (the smallest class has 20)
            assert shown[batch.labels[0] == 0].max() < 20
    assert stats.chisquare(counts["class"]).pvalue > 1e-3
    assert stats.chisquare(counts["image"], [3600, 1200, 1200]).pvalue > 1e-3
    assert stats.chisquare(counts["image"]).pvalue < 1e-6


def test_loss_and_accuracy_by_hand(bank):
    batch = TrialSampler(bank, TaskSpec(loss="weighted", readout="linear")).sample(_gens(2), 3, t_max=12, n_active=4)
    logits = torch.randn(1, 3, 20, 11, generator=torch.Generator().manual_seed(0))
    total, weight = 0.0, 0.0
    for b in range(3):
        for t in range(20):
            w = float(batch.weights[0, b, t])
            z = logits[0, b, t, :5]  # null + 4 active classes
            total += w * F.cross_entropy(z[None], batch.targets[0, b, t][None]).item()
            weight += w
    assert np.isclose(trial_loss(logits, batch).item(), total / weight, rtol=1e-5)
    # perfect report outputs give accuracy 1
    perfect = torch.zeros_like(logits)
    perfect[0, torch.arange(3), batch.report_time[0], batch.labels[0] + 1] = 5.0
    assert report_accuracy(perfect, batch).item() == 1.0


def test_single_generator_draws_all_members_at_once(bank):
    batch = TrialSampler(bank, TaskSpec()).sample(_gens(9), 300, t_max=16, n_active=10, n_members=3)
    assert batch.frames.shape == (3, 300, 20, bank.dim)
    assert batch.stimulus_time.max() == 16 - 4 - 1 and ((batch.report_time - batch.stimulus_time) >= 4).all()
    assert not torch.equal(batch.frames[0], batch.frames[1])
    again = TrialSampler(bank, TaskSpec()).sample(_gens(9), 300, t_max=16, n_active=10, n_members=3)
    assert torch.equal(batch.frames, again.frames)


@pytest.mark.parametrize("t_max,n_active", [(20, 10), (6, 10), (20, 2)])
def test_blind_optimum_is_the_best_constant_readout_of_the_real_loss(bank, t_max, n_active):
    """Search every constant sigmoid output pair (null u, classes v) under trial_loss itself: its minimum is
    the blind optimum, at the readout's corner when the wanted p(null) is out of reach (T_max = 20, 10 classes)."""
    from memrnn.task import blind_optimum

    spec = TaskSpec()
    batch = TrialSampler(bank, spec).sample(_gens(0), 10, t_max=t_max, n_active=n_active)
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    u, v = torch.meshgrid(grid, grid, indexing="ij")
    outputs = torch.where(torch.arange(11) == 0, u.reshape(-1, 1), v.reshape(-1, 1))  # (grid, 11)
    logits = outputs[:, None, None, :].expand(-1, 10, 20, -1)  # every grid point a "member"
    many = type(batch)(*(x.expand(len(outputs), *x.shape[1:]) for x in
                         (batch.frames, batch.trigger, batch.targets, batch.weights, batch.labels,
                          batch.stimulus_time, batch.report_time)), n_active=n_active, spec=spec)
    losses = trial_loss(logits, many)
    best = blind_optimum(spec, t_max, n_active)
    assert losses.min().item() == pytest.approx(best.loss, abs=2e-4)
    assert best.inside == ((t_max, n_active) != (20, 10))
    if not best.inside:
        assert losses.argmin().item() == (len(grid) - 1) * len(grid)  # u = 1, v = 0: the saturated corner
    assert blind_optimum(spec, 20, 10).loss == pytest.approx(0.36445, abs=1e-5)
