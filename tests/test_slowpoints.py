import math

import pytest
import torch
from scipy.optimize import brentq

from memrnn.data import make_synthetic
from memrnn.models import ARCHS, CELLS, EnsembleRNN
from memrnn.regularize import speed_penalty
from memrnn.slowpoints import (METHODS, class_centroids, eigenvalues, find_slow_points, in_region, jacobian,
                               residual_jacobian, rest_input, sample_states, speed_sq, visited_speed)


@pytest.fixture(scope="module")
def bank():
    return make_synthetic(n_train=100, n_test=200, seed=4)


def _model(arch, bank, E=2, H=6, scale=1.0, seeds=None, cell="reference"):
    model = EnsembleRNN(arch, E, bank.dim, H, seeds=seeds or list(range(E)), cell=cell)
    with torch.no_grad():
        model.weight_hh.mul_(scale)
    return model


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("arch", ARCHS)
def test_jacobian_is_exact(arch, cell, bank):
    model = _model(arch, bank, scale=3.0, cell=cell)
    proj = rest_input(model, bank).detach()
    states = torch.rand(2, 3, model.state_size, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    J = jacobian(model, states, proj)
    for e in range(2):
        for p in range(3):
            def f(s):
                return model.recur(s.view(1, 1, -1).expand(2, 1, -1), proj)[e, 0]
            torch.testing.assert_close(J[e, p], torch.func.jacrev(f)(states[e, p]), rtol=1e-5, atol=1e-6)


def test_reference_lstm_metric_jacobian(bank):
    model = _model("lstm", bank, scale=2.0)
    proj = rest_input(model, bank).detach()
    states = torch.rand(2, 2, model.state_size, generator=torch.Generator().manual_seed(2)) - 0.5
    A = residual_jacobian(model, states, proj, "reference")
    from memrnn.slowpoints import residual
    for e in range(2):
        def f(s):
            return residual(model, s.view(1, 1, -1).expand(2, 1, -1), proj, "reference")[e, 0]
        torch.testing.assert_close(A[e, 1], torch.func.jacrev(f)(states[e, 1]), rtol=1e-5, atol=1e-6)


def _scalar_rnn(bank, w):
    """h' = tanh(w h): the input is switched off, so fixed points solve h = tanh(w h) by hand."""
    model = EnsembleRNN("rnn", 1, bank.dim, 1)
    with torch.no_grad():
        for p in (model.weight_ih, model.bias_ih, model.bias_hh):
            p.zero_()
        model.weight_hh.fill_(w)
    return model


def test_hand_computed_fixed_points_and_stability(bank):
    # float64: q <= 1e-20 needs h = tanh(2 h) to about 1e-10, which float32 (spacing 6e-8 at h*) meets
    # only where its tanh happens to round h* onto itself
    model = _scalar_rnn(bank, 2.0).double()
    h_star = brentq(lambda h: math.tanh(2 * h) - h, 0.5, 1.0)
    starts = torch.tensor([[[-0.6], [0.02], [0.6]]], dtype=torch.float64)
    found = find_slow_points(model, bank, starts, tol=1e-20)
    torch.testing.assert_close(found.points[0, :, 0], torch.tensor([-h_star, 0.0, h_star], dtype=torch.float64),
                               atol=1e-7, rtol=0)
    assert found.converged.all() and (found.q <= 1e-20).all()
    eig = eigenvalues(model, bank, found.points)[0, :, 0]
    torch.testing.assert_close(eig.real, torch.tensor([2 * (1 - h_star**2), 2.0, 2 * (1 - h_star**2)],
                                                      dtype=torch.float64))
    # a start outside the reachable region is flagged there; the search brings it inside
    assert in_region(model, torch.tensor([[[1.5], [0.99]]])).tolist() == [[False, True]]
    for method in METHODS:
        moved = find_slow_points(model, bank, torch.tensor([[[1.5]]], dtype=torch.float64), method, tol=1e-12, lr=1e-2)
        assert moved.in_region.item() and moved.points.item() == pytest.approx(h_star, abs=1e-4)


def test_stall_rule_stops_slow_progress(bank):
    # Adam at lr 1e-3 moves h by 1e-3 a step: q cannot halve within 5 steps, so the strict rule
    # stops the point after exactly 5, while the default rule lets it go on to the cap
    model = _scalar_rnn(bank, 2.0)
    starts = torch.tensor([[[0.3]]])
    strict = find_slow_points(model, bank, starts, "adam", patience=5, progress=0.5)
    lenient = find_slow_points(model, bank, starts, "adam", max_iter=300)
    assert strict.iterations.item() == 5 and not strict.converged.item()
    assert lenient.iterations.item() == 300 and lenient.q.item() < strict.q.item()


@pytest.mark.parametrize("arch", ARCHS)
def test_contractive_network_unique_fixed_point(arch, bank):
    # float64: in float32, q < 1e-24 needs the iteration to land on an exact fixed point of float32
    # rounding (it did here: q = 0), which depends on how the machine's kernels round
    model = _model(arch, bank, E=2, H=8, scale=0.3).double()
    proj = rest_input(model, bank).detach()
    with torch.no_grad():  # iterate the map: it contracts to its unique fixed point
        s = model.init_state(1)
        for _ in range(500):
            s = model.recur(s, proj)
        assert (speed_sq(model, s, proj) < 1e-24).all()
    starts = torch.rand(2, 4, model.state_size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    starts = starts * 1.8 - 0.9
    found = find_slow_points(model, bank, starts, tol=1e-12, metric="state")
    assert found.converged.all() and (found.q <= 1e-12).all() and found.in_region.all()
    assert (found.iterations < 50).all()
    torch.testing.assert_close(found.points, s.expand(-1, 4, -1), atol=1e-5, rtol=0)
    assert len(found.unique(0)) == 1 and len(found.unique(1)) == 1
    adam = find_slow_points(model, bank, starts, method="adam", tol=1e-8, lr=1e-2, max_iter=5000, metric="state")
    assert (adam.q <= 1e-8).all()


@pytest.mark.threads
@pytest.mark.parametrize("method", ["lm", "adam"])
def test_batched_search_equals_one_at_a_time(method, bank):
    # double precision: in a flat valley float32 rounding (which depends on the batch shape and the
    # thread count) is enough to end the search at different places along the valley
    model = _model("gru", bank, E=2, H=6, scale=2.5).double()
    starts = torch.rand(2, 3, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1.6 - 0.8
    batched = find_slow_points(model, bank, starts, method=method, max_iter=300)
    for e in range(2):
        member = model.member(e)
        for p in range(3):
            alone = find_slow_points(member, bank, starts[e:e + 1, p:p + 1], method=method, max_iter=300)
            torch.testing.assert_close(alone.points[0, 0], batched.points[e, p], atol=1e-7, rtol=0)
            assert alone.converged.item() == batched.converged[e, p].item()
            assert alone.q.item() == pytest.approx(batched.q[e, p].item(), rel=1e-2, abs=1e-10)


def test_centroids_and_samples(bank):
    model = _model("lstm", bank, E=2, H=5)
    centroids = class_centroids(model, bank, "heldout", n_trials=150, noise_frames=3)
    assert centroids.states.shape == (2, 10, 10)
    assert (centroids.n_correct <= centroids.n_trials).all() and centroids.n_trials.sum() == 150
    assert (centroids.spread >= 0).all()
    samples = sample_states(model, bank, 40, max_frames=5)
    assert samples.shape == (2, 40, 10) and torch.isfinite(samples).all()
    with pytest.raises(ValueError, match="unknown method 'newton'"):
        find_slow_points(model, bank, samples, method="newton")


def test_reference_centroids_follow_the_reference_protocol(bank):
    """Training images (per class), one noise sequence at sigma/3 shared by all trials: with the
    trigger off and an untrained network, the centroid equals the mean over the class's trials of
    the states reached from its images, recomputed here by hand."""
    model = _model("gru", bank, E=1, H=5)
    with torch.no_grad():  # make the readout report every class correctly is impossible; use all trials
        model.readout_weight.zero_()
    centroids = class_centroids(model, bank, "reference", n_trials=4, noise_frames=2, seed=7)
    assert centroids.n_trials.tolist() == [min(4, int((bank.train_labels == c).sum())) for c in range(10)]
    g = torch.Generator().manual_seed(7)
    chosen = [(bank.train_labels == c).nonzero().flatten()[torch.randperm(int((bank.train_labels == c).sum()),
                                                                           generator=g)[:4]] for c in range(10)]
    noise = torch.randn(2, bank.dim, generator=g) * (bank.noise_std / 3) + bank.noise_mean
    off = torch.zeros(1, 1)
    for c in range(10):
        ends = []
        for i in chosen[c].tolist():
            s = model.step(model.init_state(1), bank.train_images[i].view(1, 1, -1), off)
            for frame in noise:
                s = model.step(s, frame.view(1, 1, -1), off)
            ends.append(s[0, 0])
        torch.testing.assert_close(centroids.states[0, c], torch.stack(ends).mean(0), rtol=1e-5, atol=1e-6)


def test_reference_search_follows_its_rule(bank):
    """Adam at lr 1e-3, divided by 10 after 40% of the iterations, h clipped to [-1, 1] after every
    step, every point running all iterations: replayed by hand with torch.optim.Adam."""
    model = _model("gru", bank, E=1, H=4, scale=3.0)
    starts = torch.rand(1, 3, 4, generator=torch.Generator().manual_seed(5)) * 2 - 1
    found = find_slow_points(model, bank, starts, method="reference", max_iter=50)
    assert (found.iterations == 50).all() and not found.converged.any()
    s = starts.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([s], lr=1e-3)
    proj = rest_input(model, bank).detach()
    for i in range(50):
        if i == 20:
            optimizer.param_groups[0]["lr"] = 1e-4
        optimizer.zero_grad()
        speed_sq(model, s, proj).sum().backward()
        optimizer.step()
        with torch.no_grad():
            s.clamp_(-1, 1)
    torch.testing.assert_close(found.points, s.detach())
    # a start pushed beyond the region comes back to its edge, not inside it
    edge = find_slow_points(model, bank, torch.full((1, 1, 4), 3.0), method="reference", max_iter=1)
    assert edge.points.abs().max() <= 1


def test_visited_speed_is_the_median_over_delay_states_of_each_class(bank):
    from memrnn.slowpoints import probe_trajectories, visited_speed

    model = _model("lstm", bank, E=2, H=5)
    speed = visited_speed(model, bank, n_frames=6, n_trials=120)
    states, labels = probe_trajectories(model, bank, 120, 5, seed=1)
    of_class = states[:, labels[0] == 3, 1:].flatten(1, 2)
    expected = speed_sq(model, of_class, rest_input(model, bank), "reference").sqrt().median(-1).values
    assert speed.shape == (2, 10) and torch.allclose(speed[:, 3], expected)


def test_float64_model_through_centroids_search_and_penalty(bank):
    """Every noise frame and image is drawn or cast in the model's dtype."""
    model = _model("lstm", bank, E=2, H=5).double()
    for protocol in ("reference", "heldout"):
        centroids = class_centroids(model, bank, protocol, n_trials=20, noise_frames=3)
        assert centroids.states.dtype == torch.float64 and torch.isfinite(centroids.states).all()
    for method in METHODS:
        found = find_slow_points(model, bank, centroids.states, method, max_iter=5)
        assert found.points.dtype == torch.float64 and torch.isfinite(found.speed).all()
    assert sample_states(model, bank, 6, max_frames=3).dtype == torch.float64
    assert visited_speed(model, bank, 4, n_trials=10).dtype == torch.float64
    penalty = speed_penalty(model, centroids.states, bank, 2, torch.Generator().manual_seed(0))
    assert penalty.dtype == torch.float64 and (penalty > 0).all()
