import numpy as np
import pytest
import torch

from memrnn.formation import _summarise, trace_run
from scipy import stats

from memrnn.presets import make_config
from memrnn.slowpoints import analyse_run
from memrnn.stats import correlate, correlation_table, median_upper, within_unit_spearman
from memrnn.train import train


def _rows(n_networks=6, slope=-0.1, noise=0.0, seed=0, protocol="decu"):
    rng = np.random.default_rng(seed)
    rows = []
    for net in range(n_networks):
        for c in range(10):
            log_speed = rng.uniform(-4, -1)
            rows.append({"run": f"r-{protocol}", "seed": net, "class": c, "dataset": "mnist", "arch": "gru",
                         "protocol": protocol, "log10_speed": log_speed,
                         "long_delay_accuracy": 0.5 + slope * log_speed + noise * rng.normal()})
    return rows


def test_monotone_relation_gives_rank_correlation_minus_one():
    result = correlate(_rows(slope=0.1))
    assert result["n"] == 60 and result["networks"] == 6
    assert result["spearman"]["r"] == pytest.approx(1.0)
    assert result["pearson"]["r"] == pytest.approx(1.0)
    low, high = result["spearman"]["ci95"]
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)


def test_noisy_relation_ci_covers_estimate_and_conditions_split():
    rows = _rows(slope=-0.1, noise=0.1) + _rows(slope=0.0, noise=0.1, seed=1, protocol="vocu")
    table = correlation_table(rows)
    assert [t["condition"] for t in table] == ["pooled", "mnist/gru/decu", "mnist/gru/vocu"]
    decu = table[1]["spearman"]
    assert decu["r"] < -0.5 and decu["ci95"][0] <= decu["r"] <= decu["ci95"][1] and decu["ci95"][1] < 0
    vocu = table[2]["spearman"]
    assert vocu["ci95"][0] < 0 < vocu["ci95"][1] or abs(vocu["r"]) < 0.3


def test_degenerate_input_gives_no_correlation():
    rows = _rows(slope=0.0)
    assert correlate(rows)["spearman"]["r"] is None


def _trace(points, q, decoded, moved, steps):
    return [{"step": s, "points": torch.tensor(p, dtype=torch.float), "q": torch.tensor(qq), "decoded": torch.tensor(d),
             "in_region": torch.ones(1, 2, dtype=torch.bool), "moved": torch.tensor(m)}
            for s, p, qq, d, m in zip(steps, points, q, decoded, moved)]


def test_formation_events_known_answer():
    steps = [10, 20, 30]
    # one member, two classes, 2-d states; class 1 is 100x faster at step 10 than at the end, and both classes
    # share one point at step 10 which splits by step 20
    points = [[[[0.1, 0.1], [0.1, 0.1]]], [[[0.3, 0.0], [0.0, 0.3]]], [[[0.4, 0.0], [0.0, 0.4]]]]
    q = [[[1e-9, 1e-2]], [[1e-9, 1e-9]], [[1e-9, 1e-9]]]
    decoded = [[[0, 1]], [[0, 1]], [[0, 1]]]
    moved = [[[0.1, 0.1]], [[0.1, 0.1]], [[0.0, 0.0]]]
    result = _summarise(_trace(points, q, decoded, moved, steps), torch.tensor([[0, 1]]), slower=10.0,
                        jump_fraction=0.5, same=1e-2)
    assert result["appears_at"] == [[10, 20]]
    assert result["splits"] == [{"member": 0, "classes": [0, 1], "step": 20}]
    assert np.array(result["pc"]).shape == (1, 2, 3, 2)
    # a jump of more than half the distance to the other class's point (0.4 * sqrt(2) at step 30) breaks the trace
    moved[1] = [[0.3, 0.1]]
    result = _summarise(_trace(points, q, decoded, moved, steps), torch.tensor([[0, 1]]), slower=10.0,
                        jump_fraction=0.5, same=1e-2)
    assert result["appears_at"] == [[30, 20]]
    moved[1] = [[0.25, 0.1]]  # just under 0.5 * 0.566
    result = _summarise(_trace(points, q, decoded, moved, steps), torch.tensor([[0, 1]]), slower=10.0,
                        jump_fraction=0.5, same=1e-2)
    assert result["appears_at"] == [[10, 20]]


def test_readout_free_appearance_ignores_what_the_point_reports():
    steps = [10, 20, 30]
    points = [[[[0.3, 0.0], [0.0, 0.3]]], [[[0.3, 0.0], [0.0, 0.3]]], [[[0.3, 0.0], [0.0, 0.3]]]]
    q = [[[1e-9, 1e-9]]] * 3
    moved = [[[0.0, 0.0]]] * 3
    decoded = [[[1, 1]], [[0, 0]], [[0, 1]]]  # class 1's readout is learnt last, class 0's point reads 1 at first
    result = _summarise(_trace(points, q, decoded, moved, steps), torch.tensor([[0, 1]]), slower=10.0,
                        jump_fraction=0.5, same=1e-2)
    assert result["appears_at"] == [[20, 30]]
    assert result["appears_at_unread"] == [[10, 10]]
    q = [[[1e-9, 1e-4]], [[1e-9, 1e-9]], [[1e-9, 1e-9]]]  # 100x faster at step 10: not yet the same point
    result = _summarise(_trace(points, q, decoded, moved, steps), torch.tensor([[0, 1]]), slower=10.0,
                        jump_fraction=0.5, same=1e-2)
    assert result["appears_at_unread"] == [[10, 20]]


def test_median_upper_bound_covers_and_refuses_what_n_cannot_give():
    """One-sided: the median lies below the bound at least 1 - alpha of the time (skewed data), and with
    too few values for the level there is no bound (+inf), never one that rejects too often."""
    rng, sims, alpha = np.random.default_rng(4), 4000, 0.0125
    median = float(np.exp(0))  # lognormal's median
    below = sum(median_upper(rng.lognormal(size=10), alpha) < median for _ in range(sims))
    assert stats.binomtest(below, sims, alpha, alternative="greater").pvalue > 0.01
    assert median_upper([1, 2, 3, 4, 5], 0.005) == np.inf and median_upper([1, 2, 3, 4, 5], 0.05) == 5


def test_within_network_correlation_ignores_the_association_between_networks():
    """Inside each network accuracy rises with speed; between networks the faster is the worse."""
    x, y, units = [], [], []
    for net in range(4):
        for c in range(5):
            x.append(net * 10 + c)
            y.append(-net * 10 + c)
            units.append(net)
    assert stats.spearmanr(x, y).statistic < -0.8
    assert within_unit_spearman(x, y, units) == {0: pytest.approx(1.0), 1: pytest.approx(1.0), 2: pytest.approx(1.0),
                                                 3: pytest.approx(1.0)}
    assert within_unit_spearman([1, 1, 2], [3, 4, 5], [0, 0, 1]) == {}  # no variation in a network, one point in the other


def test_the_trace_starts_from_points_the_network_can_reach(tmp_path):
    """By default from Levenberg-Marquardt's points (never on the clip boundary), and it records where it started."""
    run = train(make_config("smoke", steps=20, checkpoint_every=10, log_every=10), tmp_path, progress=False)
    ours, lm = trace_run(run, max_iter=3), analyse_run(run, search="lm")
    assert ours["analysis"][0] == "lm" and ours["start_in_region"] == lm["in_region"]
    assert all(all(member) for member in lm["in_region"])
    theirs = trace_run(run, max_iter=3, search="reference")
    assert theirs["analysis"][0] == "reference" and theirs["start_in_region"] == analyse_run(run)["in_region"]
