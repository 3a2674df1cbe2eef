"""Networks from elsewhere: the torch adapter is exact, and the generic fixed-point search finds the
fixed points of systems solved by hand and the same points as the analysis of this package's networks."""
import math
from pathlib import Path

import pytest
import torch
from scipy.optimize import brentq
from torch import nn

from memrnn import EnsembleRNN, find_fixed_points, reachable_region, sample_starts, step_function, unroll
from memrnn import flipflop
from memrnn.data import make_synthetic
from memrnn.fixedpoints import METHODS, unique_indices
from memrnn.slowpoints import eigenvalues, find_slow_points

TORCH_RNNS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


def _torch_rnn(arch, input_size=4, hidden=6, batch_first=True, scale=1.0, seed=0, **kwargs):
    torch.manual_seed(seed)
    rnn = TORCH_RNNS[arch](input_size, hidden, batch_first=batch_first, **kwargs)
    with torch.no_grad():
        for p in rnn.parameters():  # torch's init is small: spread the weights so every gate matters
            p.mul_(scale)
    return rnn


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("arch", TORCH_RNNS)
def test_from_torch_gives_the_same_outputs_and_round_trips(arch, batch_first):
    rnn = _torch_rnn(arch, batch_first=batch_first, scale=3.0)
    readout = nn.Linear(6, 3)
    x = torch.randn(5, 7, 4, generator=torch.Generator().manual_seed(1)) * 2  # (batch, time, input)
    expected = readout(rnn(x if batch_first else x.transpose(0, 1))[0])
    expected = expected if batch_first else expected.transpose(0, 1)
    net = EnsembleRNN.from_torch(rnn, readout)
    assert (net.arch, net.n_members, net.cell) == (arch, 1, "torch")
    outputs = net(x[None, ..., :-1], x[None, ..., -1])[0]
    torch.testing.assert_close(outputs, expected, rtol=1e-5, atol=1e-6)
    back, back_readout = net.to_torch(0)
    for original, copy in ((rnn, back), (readout, back_readout)):
        assert original.state_dict().keys() == copy.state_dict().keys()
        assert all(torch.equal(v, copy.state_dict()[k]) for k, v in original.state_dict().items())


def test_from_torch_without_readout_or_biases_outputs_h():
    rnn = _torch_rnn("gru", input_size=1, bias=False, scale=2.0)
    x = torch.randn(3, 5, 1, generator=torch.Generator().manual_seed(2))
    net = EnsembleRNN.from_torch(rnn)
    torch.testing.assert_close(net(x[None, ..., :-1], x[None, ..., -1])[0], rnn(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rnn, readout, error, message", [
    (nn.GRU(3, 4, num_layers=2), None, ValueError, "a 2-layer GRU: only single-layer"),
    (nn.LSTM(3, 4, bidirectional=True), None, ValueError, "a bidirectional LSTM"),
    (nn.LSTM(3, 4, proj_size=2), None, ValueError, "proj_size=2: only proj_size=0"),
    (nn.RNN(3, 4, nonlinearity="relu"), None, ValueError, "nonlinearity='relu': only 'tanh'"),
    (nn.GRU(3, 4), nn.Linear(5, 2), ValueError, "in_features=4"),
    (nn.Linear(3, 4), None, TypeError, "expected a torch.nn.GRU, LSTM or RNN, got Linear"),
])
def test_from_torch_refuses_what_it_cannot_represent(rnn, readout, error, message):
    with pytest.raises(error, match=message):
        EnsembleRNN.from_torch(rnn, readout)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("arch", TORCH_RNNS)
def test_step_function_is_one_step_of_the_module(arch, batch_first):
    rnn = _torch_rnn(arch, batch_first=batch_first, scale=2.0)
    g = torch.Generator().manual_seed(3)
    x, h = torch.randn(5, 4, generator=g), torch.rand(5, 12 if arch == "lstm" else 6, generator=g) - 0.5
    state = (h[None, :, :6].contiguous(), h[None, :, 6:].contiguous()) if arch == "lstm" else h[None]
    _, following = rnn(x.unsqueeze(1 if batch_first else 0), state)
    expected = torch.cat([following[0][0], following[1][0]], -1) if arch == "lstm" else following[0]
    torch.testing.assert_close(step_function(rnn)(h, x), expected)
    torch.testing.assert_close(step_function(EnsembleRNN.from_torch(rnn))(h, x), expected, rtol=1e-5, atol=1e-6)


def test_linear_rnn_has_its_one_fixed_point_with_the_eigenvalues_of_a():
    """h' = A h + b: the fixed point is (I - A)^-1 b, the Jacobian A everywhere."""
    g = torch.Generator().manual_seed(4)
    A, b = torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    expected_eig = torch.linalg.eigvals(A)
    for radius in (0.8, 1.5):  # a stable and an unstable fixed point
        A_r = A * radius / expected_eig.abs().max()
        fixed = torch.linalg.solve(torch.eye(5, dtype=torch.float64) - A_r, b)
        starts = torch.randn(4, 5, generator=g, dtype=torch.float64) * 3
        found = find_fixed_points(lambda h, x: h @ A_r.T + b + 0 * x, starts, torch.zeros(1, dtype=torch.float64),
                                  tol=1e-24)
        assert found.converged.all() and found.in_region.all() and (found.iterations <= 10).all()
        torch.testing.assert_close(found.points, fixed.expand(4, -1), atol=1e-9, rtol=0)
        torch.testing.assert_close(found.jacobians, A_r.expand(4, -1, -1))
        eig = torch.linalg.eigvals(A_r)
        torch.testing.assert_close(found.eigenvalues[0], eig[eig.abs().argsort(descending=True)])
        assert found.stable.tolist() == [radius < 1] * 4
        torch.testing.assert_close(found.moved, (starts - fixed).norm(dim=-1))
        assert len(found.unique()) == 1


def test_tanh_unit_has_three_fixed_points_and_the_middle_one_is_unstable():
    """h' = tanh(w h) with w = 2: fixed points 0 and +-h*, h* = tanh(2 h*) solved by bisection;
    slopes w (unstable) at 0 and w (1 - h*^2) < 1 (stable) at +-h*."""
    h_star = brentq(lambda h: math.tanh(2 * h) - h, 0.5, 1.0)
    starts = torch.tensor([[-0.6], [0.02], [0.6], [0.7], [-0.99]], dtype=torch.float64)
    x = torch.zeros(1, dtype=torch.float64)
    for method in METHODS:
        options = {"reference": {"max_iter": 2000}, "adam": {"lr": 1e-2, "tol": 1e-14}, "lm": {"tol": 1e-20}}[method]
        found = find_fixed_points(lambda h, _: torch.tanh(2 * h), starts, x, method, region=(-1, 1), **options)
        assert found.in_region.all(), method
        distinct = found.unique(distance=1e-3)
        order = distinct.points[:, 0].argsort()
        torch.testing.assert_close(distinct.points[order, 0], torch.tensor([-h_star, 0, h_star], dtype=torch.float64),
                                   atol=1e-9 if method == "lm" else 1e-4, rtol=0, msg=method)
        assert distinct.stable[order].tolist() == [True, False, True], method
        slopes = torch.tensor([2 * (1 - h_star ** 2), 2, 2 * (1 - h_star ** 2)], dtype=torch.float64)
        torch.testing.assert_close(distinct.eigenvalues[order, 0].real, slopes, atol=1e-3, rtol=0, msg=method)
    lm = find_fixed_points(lambda h, _: torch.tanh(2 * h), starts, x, region=(-1, 1), tol=1e-20)
    assert lm.converged.all() and (lm.q <= 1e-20).all() and (lm.q < lm.q_start).all()


def test_region_keeps_the_search_inside_and_flags_what_it_cannot_reach():
    """h' = h / 2 + 1 has its one fixed point at h = 2, outside (-1, 1)."""
    def step(h, _):
        return h / 2 + 1
    starts, x = torch.tensor([[0.0], [1.5]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    free = find_fixed_points(step, starts, x)
    assert free.converged.all() and free.points[:, 0].tolist() == pytest.approx([2, 2])
    for method in ("lm", "adam"):
        boxed = find_fixed_points(step, starts, x, method, region=(-1, 1), max_iter=500, lr=1e-1)
        assert boxed.in_region.all() and not boxed.converged.any(), method  # pressed against the wall at 1
        assert (boxed.points > 0.99).all() and (boxed.points < 1).all(), method
    reference = find_fixed_points(step, starts + 0.95, x, "reference", region=(-1, 1), max_iter=500)
    assert not reference.in_region.any()  # the closed box: it ends on the boundary h = 1, no state of the network
    assert find_fixed_points(step, starts, x, region=(0, 3)).converged.all()
    with pytest.raises(ValueError, match="both finite or both infinite"):
        find_fixed_points(step, starts, x, region=(0, math.inf))
    with pytest.raises(ValueError, match="unknown method 'newton'"):
        find_fixed_points(step, starts, x, "newton")


def test_unique_keeps_the_slowest_of_each_group():
    points = torch.tensor([[0.0], [5e-4], [1.0], [1.0 + 2e-3]])
    q = torch.tensor([2.0, 1.0, 3.0, 4.0])
    assert unique_indices(points, q, 1e-3).tolist() == [1, 2, 3]
    assert unique_indices(points, q, 1e-2).tolist() == [1, 2]


def test_starts_are_drawn_from_the_visited_states():
    states = torch.arange(24.0).reshape(2, 4, 3)  # 8 states of size 3
    starts = sample_starts(states, 5, seed=1)
    rows = {tuple(r) for r in states.reshape(-1, 3).tolist()}
    assert starts.shape == (5, 3) and len({tuple(r) for r in starts.tolist()}) == 5
    assert {tuple(r) for r in starts.tolist()} <= rows
    assert {tuple(r) for r in sample_starts(states, 20).tolist()} <= rows  # more than there are: with replacement
    torch.testing.assert_close(sample_starts(states, 5, seed=1), starts)
    noisy = sample_starts(states, 5, noise=0.1, seed=1)
    assert 0 < (noisy - starts).abs().max() < 1
    with pytest.raises(ValueError, match="n=0"):
        sample_starts(states, 0)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_generic_search_finds_the_points_of_the_ensemble_analysis(arch):
    """A torch network's own forward, differentiated by autograd, against the package's analysis of
    its from_torch copy (analytic Jacobian, the bank's rest input): the same points."""
    bank = make_synthetic(n_train=20, n_test=20, seed=4)
    rnn = _torch_rnn(arch, input_size=bank.dim + 1, scale=2.0, seed=5).double()
    net = EnsembleRNN.from_torch(rnn)
    S = net.state_size
    starts = torch.rand(6, S, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 1.8 - 0.9
    ours = find_slow_points(net, bank, starts[None], tol=1e-20, metric="state")
    rest = torch.cat([torch.full((bank.dim,), bank.noise_mean), torch.zeros(1)]).double()
    generic = find_fixed_points(step_function(rnn), starts, rest, region=reachable_region(rnn), tol=1e-20)
    assert ours.converged.sum() >= 3  # true fixed points, where both searches must agree
    assert generic.converged.tolist() == ours.converged[0].tolist()
    same = ours.converged[0]
    torch.testing.assert_close(generic.points[same], ours.points[0, same], atol=1e-9, rtol=0)
    torch.testing.assert_close(generic.eigenvalues[same].abs().sort(-1).values,
                               eigenvalues(net, bank, ours.points)[0, same].abs().sort(-1).values)


def test_readme_example_runs_on_a_gru_and_an_lstm():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("### Your own network")[1].split("```python")[1].split("```")[0]
    namespace = {}
    exec(example, namespace)
    assert namespace["states"].shape == (64, 50, 32) and namespace["found"].points.shape == (512, 32)
    assert namespace["points"].points.shape[1] == 16 and namespace["network"].arch == "gru"


def test_unroll_follows_the_module():
    rnn = _torch_rnn("lstm", scale=2.0)
    x = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(7))
    states = unroll(step_function(rnn), x, torch.zeros(3, 12))
    output, (h, c) = rnn(x)
    torch.testing.assert_close(states[..., :6], output)
    torch.testing.assert_close(states[:, -1, 6:], c[0])


def test_flipflop_targets_hold_the_last_pulse():
    config = flipflop.make_config("smoke", input_noise=0.0)
    inputs, targets = flipflop.trials(config, 20, torch.Generator().manual_seed(8))
    expected = torch.empty_like(targets)
    for t in range(config.trial_length):
        pulsed = inputs[:, t] != 0
        expected[:, t] = torch.where(pulsed, inputs[:, t], expected[:, t - 1] if t else 0)
    assert torch.equal(targets, expected) and (targets.abs() == 1).all()
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        flipflop.make_config("fast")


@pytest.mark.parametrize("update_bias, lost_at", [(50.0, 200), (-50.0, 5)])
def test_holding_time_is_how_long_the_readout_keeps_its_signs(update_bias, lost_at):
    """A GRU whose update gate is shut keeps any state (h' = h): never lost. One whose gate is open and
    whose recurrence is zero forgets at once (h' = tanh(W x) relaxes to 0, read out as +): lost at the
    first check."""
    net = flipflop.FlipFlopNet(flipflop.make_config("smoke", hidden_size=3))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.gru.bias_ih_l0[3:6] = update_bias  # torch's gate order r, z, n: h' = (1 - z) n + z h
        net.gru.weight_ih_l0[6:].copy_(torch.eye(3))
        net.readout.weight.copy_(torch.eye(3))
        net.readout.bias.fill_(1e-3)
    points = torch.tensor([[-0.5, 0.5, 0.5], [0.5, -0.5, -0.5]])
    held = flipflop.holding_times(net, points, noise=0.3, n_trials=4, max_steps=200)
    assert (held == lost_at).all()
