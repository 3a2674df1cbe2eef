"""The fast path's equivalence test: TOST by hand, twins paired by seed, the decision from shared noise."""
import math

import numpy as np
import pytest

from memrnn import equivalence
from memrnn.ablation import tost


def test_tost_known_answer():
    # n = 2, mean 0, standard error 0.01: t = 3 on 1 degree of freedom (Cauchy), P(T > 3) = 1/2 - atan(3)/pi
    assert tost([-0.01, 0.01], 0.03) == pytest.approx(0.5 - math.atan(3) / math.pi)


def test_tost_outside_the_margin_is_not_equivalent():
    assert tost(np.full(50, 0.05) + np.linspace(-0.01, 0.01, 50), 0.03) > 0.99
    assert tost([0.04, 0.04], 0.03) == 1.0 and tost([0.0, 0.0], 0.03) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        tost([0.0])


def _rows(first_seed, fast, noise, steps=3000, seeds=5):
    """Grid rows whose accuracies encode the seed, so a mispaired twin shows; the fast path adds 0.001 or
    0.002 (odd seeds), separate noise 0.2 at long delays."""
    rows = []
    for protocol in equivalence.PROTOCOLS:
        seed = np.arange(first_seed, first_seed + seeds, dtype=float)
        fast_shift = 0.001 * fast * (1 + seed % 2)
        shift = fast_shift + (0.2 if noise == "torch" else 0.0)
        rows.append({"dataset": "mnist-5k", "arch": "gru", "protocol": protocol, "run": f"{protocol}-{first_seed}-{fast}",
                     "trained_delay_accuracy": (0.5 + seed / 100 + fast_shift).tolist(),
                     "delays": [20, 100], "overall": np.stack([0.5 + seed / 100, 0.4 + seed / 100 + shift], 1).tolist()})
    return rows


def test_twins_paired_by_seed_and_the_decision_reads_shared_noise(tmp_path, monkeypatch):
    calls = []

    def fake_grid(preset, archs, protocols, out, progress, fast, noise, first_seed, seeds, steps):
        calls.append((first_seed, fast, noise))
        return _rows(first_seed, fast, noise, steps, seeds)

    monkeypatch.setattr(equivalence, "run_grid", fake_grid)
    summary = equivalence.run_equivalence(tmp_path, tmp_path / "result.json", blocks=3, progress=False)
    shared, separate = summary["shared"], summary["separate"]
    assert shared["trained"]["n"] == 30 and separate["long"]["n"] == 10
    expected = [0.001 * (1 + s % 2) for first in (0, 5, 10) for _ in equivalence.PROTOCOLS for s in range(first, first + 5)]
    assert shared["trained"]["differences"] == pytest.approx(expected)  # a mispairing would show seed gaps
    assert shared["long"]["mean"] == pytest.approx(np.mean(expected))
    assert separate["long"]["mean"] == pytest.approx(0.0014 - 0.2)  # seeds 0-4: two odd of five
    assert summary["equivalent"] and shared["long"]["tost_p"] < 0.05 and separate["long"]["tost_p"] > 0.99
    assert {c for c in calls if c[2] == "torch"} == {(0, False, "torch")}
    assert sorted({c[0] for c in calls}) == [0, 5, 10]
    assert (tmp_path / "result.json").exists() and "equivalent within ±0.03" in equivalence.format_equivalence(summary)
