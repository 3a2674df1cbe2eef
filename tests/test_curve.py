"""The learning-curve rule that fixes the cpu preset's length: known answers, subtle failures, the ladder's order."""
import json

import numpy as np
import pytest

from memrnn import curve
from memrnn.presets import make_config


def measured(start, end, steps=(750, 1500, 2250, 3000)):
    """Two networks whose per-class accuracy is ``start`` at 0.75 L and ``end`` at L."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    before = [np.stack([start - 0.01, start + 0.01]).tolist()] * (len(steps) - 1)
    return {"steps": list(steps), "accuracy": before + [np.stack([end - 0.01, end + 0.01]).tolist()]}


def test_gains_are_measured_from_three_quarters_to_the_end_averaged_over_networks():
    start = np.linspace(0.80, 0.98, 10)
    found = curve.plateau(measured(start, start + 0.005), 3000)
    assert found.mean_gain == pytest.approx(0.005)
    assert found.class_gains == pytest.approx([0.005] * 10)
    assert found.final == pytest.approx(start.mean() + 0.005)
    assert found.passed


def test_a_late_class_still_learning_fails_although_the_mean_has_plateaued():
    """VoCu's last class, met at 0.70 L: +0.035 on one class is only +0.0035 on the mean."""
    start = np.full(10, 0.93)
    end = start.copy()
    end[9] += 0.035
    found = curve.plateau(measured(start, end), 3000)
    assert found.mean_gain < curve.MEAN_GAIN
    assert not found.passed
    assert "class 9" in found.reason()


def test_a_mean_still_rising_fails_although_no_class_rises_much():
    start = np.full(10, 0.90)
    found = curve.plateau(measured(start, start + 0.012), 3000)
    assert max(found.class_gains) < curve.CLASS_GAIN
    assert not found.passed


def test_the_thresholds_are_strict():
    start = np.full(10, 0.5)
    assert not curve.plateau(measured(start, start + curve.MEAN_GAIN), 3000).passed
    assert curve.plateau(measured(start, start + curve.MEAN_GAIN - 1e-3), 3000).passed


def test_a_falling_accuracy_is_a_plateau():
    """Longer training that overfits the 5,000 training images gains nothing: more steps would not help."""
    start = np.full(10, 0.95)
    assert curve.plateau(measured(start, start - 0.05), 3000).passed


def test_a_run_without_the_three_quarter_checkpoint_is_refused():
    with pytest.raises(ValueError, match="2250"):
        curve.plateau(measured(np.ones(10), np.ones(10), steps=(1000, 2000, 3000)), 3000)
    with pytest.raises(ValueError, match="3000"):
        curve.plateau(measured(np.ones(10), np.ones(10), steps=(750, 1500, 2250)), 3000)


def test_the_shortest_passing_rung_is_chosen_else_the_longest():
    ladder = (3000, 4000, 6000)
    assert curve.choose([{"steps": 3000, "passed": False}, {"steps": 4000, "passed": True}], ladder)[0] == 4000
    steps, why = curve.choose([{"steps": s, "passed": False} for s in ladder], ladder)
    assert steps == 6000 and "no length" in why
    with pytest.raises(ValueError, match="3000"):
        curve.choose([{"steps": 4000, "passed": True}], ladder)


@pytest.fixture
def tiny(tmp_path):
    def run():
        return curve.run_curve(tmp_path / "runs", tmp_path / "curve.json", progress=False, preset="smoke",
                               ladder=(80, 160), datasets=("synthetic",), conditions=(("gru", "vocu"), ("gru", "decu")),
                               networks=2)
    return run


def test_the_ladder_stops_at_the_first_passing_rung(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(curve, "MEAN_GAIN", 10.0)
    monkeypatch.setattr(curve, "CLASS_GAIN", 10.0)
    summary = tiny()
    assert summary["chosen_steps"] == 80
    assert [r["steps"] for r in summary["rungs"]] == [80]
    assert [c["protocol"] for c in summary["rungs"][0]["conditions"]] == ["vocu", "decu"]
    assert json.loads((tmp_path / "curve.json").read_text()) == json.loads(json.dumps(summary))
    assert len(list((tmp_path / "runs").glob("synthetic-gru-*"))) == 2


def test_a_rung_stops_at_its_first_failure_but_the_longest_is_trained_in_full(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(curve, "MEAN_GAIN", -10.0)
    summary = tiny()
    assert summary["chosen_steps"] == 160 and not any(r["passed"] for r in summary["rungs"])
    assert [[c["protocol"] for c in r["conditions"]] for r in summary["rungs"]] == [["vocu"], ["vocu", "decu"]]
    assert len(list((tmp_path / "runs").glob("synthetic-gru-decu-*"))) == 1  # at the longest rung only
    first = summary["rungs"][0]["conditions"][0]
    assert first["steps"] == [20, 40, 60, 80] and np.asarray(first["accuracy"]).shape == (4, 2, 10)


def test_the_measurement_is_paired_and_deterministic(tiny, tmp_path, monkeypatch):
    """The same test trials at every checkpoint: measuring a run twice gives the same numbers."""
    monkeypatch.setattr(curve, "MEAN_GAIN", 10.0)
    monkeypatch.setattr(curve, "CLASS_GAIN", 10.0)
    summary = tiny()
    run_dir = tmp_path / "runs" / summary["rungs"][0]["conditions"][0]["run"]
    assert curve.measure(run_dir) == {k: summary["rungs"][0]["conditions"][0][k] for k in ("steps", "accuracy")}


def test_the_table_names_every_judged_condition_and_the_choice(tiny, monkeypatch):
    monkeypatch.setattr(curve, "MEAN_GAIN", 10.0)
    monkeypatch.setattr(curve, "CLASS_GAIN", 10.0)
    summary = tiny()
    text = curve.format_curve(summary)
    assert "synthetic GRU·VoCu" in text and "synthetic GRU·DeCu" in text and "chosen: 80 steps" in text
    page = curve.curve_markdown(summary)
    assert "Conditions judged per length: 80 steps: 2 of 2." in page and curve.RULE in page and "not trained" not in page


def test_the_cpu_preset_trains_for_the_length_the_committed_curve_chose():
    summary = json.loads(curve.RESULT.read_text())
    assert make_config("cpu").steps == summary["chosen_steps"] and summary["rule"] == curve.RULE
    assert make_config("cpu").seeds == 10


def test_the_committed_curve_and_its_page_agree():
    summary = json.loads(curve.RESULT.read_text())
    assert summary["rule"] == curve.RULE
    assert curve.choose(summary["rungs"])[0] == summary["chosen_steps"]
    assert (curve.BOOK / curve.TABLE).read_text() == curve.curve_markdown(summary)
    assert (curve.BOOK / curve.FIGURE).read_text().lstrip().startswith(("<?xml", "<svg"))
