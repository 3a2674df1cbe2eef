import pytest
import torch

from memrnn.data import make_synthetic
from memrnn.evaluate import accuracy_by_delay
from memrnn.models import EnsembleRNN


@pytest.fixture(scope="module")
def bank():
    return make_synthetic(n_train=100, n_test=60, seed=2)


@pytest.fixture(scope="module", params=["gru", "lstm"])
def model(request, bank):
    torch.manual_seed(0)
    # float64: the closest call between two outputs is 1e-6 (10 float32 epsilons), so in float32 the
    # summation order (batch shape, ensemble size, thread count) could decide an argmax
    net = EnsembleRNN(request.param, 3, bank.dim, 16, seeds=[0, 1, 2]).double()
    with torch.no_grad():  # make the readout favour classes so accuracy is not trivially 0
        net.readout_bias[:, :, 0] -= 3.0
    return net


def _explicit_accuracy(model, bank, delays, n_trials, seed):
    """Build each probe trial as a full input sequence and unroll it with forward()."""
    g = torch.Generator().manual_seed(seed)
    trials = torch.randperm(len(bank.test_labels), generator=g)[:n_trials]
    noise = [torch.randn(n_trials, bank.dim, generator=g, dtype=torch.float64) * bank.noise_std + bank.noise_mean
             for _ in range(max(delays))]
    out = []
    for d in delays:
        frames = torch.stack([bank.test_images[trials].double()] + noise[:d], dim=1)  # (B, d+1, D)
        trigger = torch.zeros(n_trials, d + 1, dtype=torch.float64)
        trigger[:, d] = 1
        E = model.n_members
        logits = model(frames.expand(E, -1, -1, -1), trigger.expand(E, -1, -1))[:, :, -1]
        out.append((logits.argmax(-1) == bank.test_labels[trials] + 1).float().mean(-1))
    return torch.stack(out, dim=1)


@pytest.mark.threads
def test_branched_readout_equals_full_unroll_of_each_delay(model, bank):
    delays = [1, 4, 7, 12]
    result = accuracy_by_delay(model, bank, delays, n_trials=40, seed=3)
    with torch.no_grad():
        expected = _explicit_accuracy(model, bank, delays, 40, 3)
    torch.testing.assert_close(result.overall, expected)
    assert result.accuracy.shape == (3, 4, 10) and sum(result.trials_per_class) == 40


@pytest.mark.threads
def test_member_alone_gives_its_row(model, bank):
    together = accuracy_by_delay(model, bank, [5, 30], n_trials=60, seed=1)
    alone = accuracy_by_delay(model.member(2), bank, [5, 30], n_trials=60, seed=1)
    torch.testing.assert_close(together.accuracy[2:3], alone.accuracy)


def test_per_class_accuracy_is_consistent_with_overall(model, bank):
    result = accuracy_by_delay(model, bank, [6], n_trials=60, seed=0, chunk_size=7)
    counts = torch.tensor(result.trials_per_class, dtype=torch.float)
    per_class = torch.nan_to_num(result.accuracy[:, 0])
    torch.testing.assert_close((per_class * counts).sum(-1) / counts.sum(), result.overall[:, 0])


def test_bad_delays(model, bank):
    with pytest.raises(ValueError, match="positive"):
        accuracy_by_delay(model, bank, [0, 5], n_trials=4)
