"""The learning-curve rule that fixes the cpu preset's length: known answers, subtle failures, the ladder's order."""
import json

import numpy as np
import pytest

from memrnn import curve, evidence
from memrnn.presets import make_config


def measured(final, steps=(750, 1500, 2250, 3000), quarter=None):
    """Two networks whose per-class accuracy ends at ``final`` (and is ``quarter`` at 0.75 L, default the same)."""
    final = np.asarray(final, float)
    quarter = final if quarter is None else np.asarray(quarter, float)
    before = [np.stack([quarter - 0.01, quarter + 0.01]).tolist()] * (len(steps) - 1)
    return {"steps": list(steps), "accuracy": before + [np.stack([final - 0.01, final + 0.01]).tolist()]}


def longer(final):
    return measured(final, steps=(1125, 2250, 3375, 4500))


def test_the_gain_is_measured_between_lengths_at_their_ends_averaged_over_networks():
    start = np.linspace(0.80, 0.98, 10)
    found = curve.plateau(measured(start), longer(start + 0.005))
    assert found.mean_gain == pytest.approx(0.005)
    assert found.class_gains == pytest.approx([0.005] * 10)
    assert found.passed


def test_the_schedules_last_events_inside_a_run_do_not_decide():
    """VoCu's last class enters at 0.70 L: within the run class 9 gains +0.3 over the last quarter, which
    the first rule read as unfinished training; the next length ends where this one did, so it passed."""
    final = np.full(10, 0.93)
    quarter = final.copy()
    quarter[9] -= 0.3
    run = measured(final, quarter=quarter)
    assert curve.last_quarter_gain(run, 3000)[1][9] == pytest.approx(0.3)
    assert curve.plateau(run, longer(final)).passed


def test_a_late_class_still_learning_fails_although_the_mean_has_plateaued():
    start = np.full(10, 0.90)
    end = start.copy()
    end[9] += 0.06
    found = curve.plateau(measured(start), longer(end))
    assert found.mean_gain < curve.MEAN_GAIN
    assert not found.passed
    assert "class 9" in found.reason()


def test_a_mean_still_rising_fails_although_no_class_rises_much():
    start = np.full(10, 0.80)
    found = curve.plateau(measured(start), longer(start + 0.012))
    assert max(found.class_gains) < curve.CLASS_GAIN
    assert not found.passed


def test_the_thresholds_are_strict():
    start = np.full(10, 0.5)
    assert not curve.plateau(measured(start), longer(start + curve.MEAN_GAIN)).passed
    assert curve.plateau(measured(start), longer(start + curve.MEAN_GAIN - 1e-3)).passed


def test_a_falling_accuracy_is_a_plateau():
    """Longer training that overfits the 5,000 training images gains nothing: more steps would not help."""
    start = np.full(10, 0.95)
    assert curve.plateau(measured(start), longer(start - 0.05)).passed


def test_the_next_length_must_be_longer():
    with pytest.raises(ValueError, match="longer"):
        curve.plateau(longer(np.ones(10)), measured(np.ones(10)))


def test_the_first_rules_window_needs_its_checkpoints():
    with pytest.raises(ValueError, match="2250"):
        curve.last_quarter_gain(measured(np.ones(10), steps=(1000, 2000, 3000)), 3000)


def test_the_shortest_passing_affordable_length_is_chosen_else_the_longest_affordable():
    ladder = (3000, 4000, 6000, 8000)
    rungs = [{"steps": 3000, "passed": False}, {"steps": 4000, "passed": True}, {"steps": 6000, "passed": None}]
    assert curve.choose(rungs, ladder, affordable=6000)[0] == 4000
    steps, why = curve.choose([{"steps": s, "passed": False} for s in ladder[:3]], ladder, affordable=6000)
    assert steps == 6000 and "no affordable length" in why
    with pytest.raises(ValueError, match="4000"):
        curve.choose([{"steps": 3000, "passed": False}, {"steps": 4000, "passed": None}], ladder, affordable=6000)
    with pytest.raises(ValueError, match="3000"):
        curve.choose([{"steps": 4000, "passed": True}], ladder, affordable=6000)


@pytest.fixture
def tiny(tmp_path):
    def run():
        return curve.run_curve(tmp_path / "runs", tmp_path / "curve.json", progress=False, preset="smoke",
                               ladder=(80, 160, 240), affordable=160, datasets=("synthetic",),
                               conditions=(("gru", "vocu"), ("gru", "decu")), networks=2)
    return run


def test_the_ladder_stops_once_a_length_passes_against_the_next(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(curve, "MEAN_GAIN", 10.0)
    monkeypatch.setattr(curve, "CLASS_GAIN", 10.0)
    summary = tiny()
    assert summary["chosen_steps"] == 80
    assert [(r["steps"], r["passed"]) for r in summary["rungs"]] == [(80, True), (160, None)]
    assert [c["protocol"] for c in summary["rungs"][0]["conditions"]] == ["vocu", "decu"]
    assert evidence.plateau(80, tmp_path / "curve.json") == {("synthetic", "gru", "vocu"): True,
                                                            ("synthetic", "gru", "decu"): True}
    assert json.loads((tmp_path / "curve.json").read_text()) == json.loads(json.dumps(summary))
    assert len(list((tmp_path / "runs").glob("synthetic-gru-*"))) == 4


def test_without_a_plateau_the_longest_affordable_length_is_judged_against_the_next(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(curve, "MEAN_GAIN", -10.0)
    summary = tiny()
    assert summary["chosen_steps"] == 160
    assert [(r["steps"], r["passed"]) for r in summary["rungs"]] == [(80, False), (160, False), (240, None)]
    assert set(evidence.plateau(160, tmp_path / "curve.json").values()) == {False}
    first = summary["rungs"][0]["conditions"][0]
    # the two checkpoints the rules read, 0.75 L and L
    assert first["steps"] == [60, 80] and np.asarray(first["accuracy"]).shape == (2, 2, 10)
    second = summary["rungs"][1]["conditions"][0]
    assert first["gain_to_next"] == pytest.approx(second["final"] - first["final"])


def test_the_affordable_length_must_have_a_next_length(tmp_path):
    with pytest.raises(ValueError, match="affordable=240"):
        curve.run_curve(tmp_path, tmp_path / "c.json", progress=False, preset="smoke", ladder=(80, 160, 240),
                        affordable=240)


def test_the_measurement_is_paired_and_deterministic(tiny, tmp_path, monkeypatch):
    """The same test trials at every checkpoint: measuring a run twice gives the same numbers."""
    monkeypatch.setattr(curve, "MEAN_GAIN", 10.0)
    monkeypatch.setattr(curve, "CLASS_GAIN", 10.0)
    summary = tiny()
    run_dir = tmp_path / "runs" / summary["rungs"][0]["conditions"][0]["run"]
    assert curve.measure(run_dir) == {k: summary["rungs"][0]["conditions"][0][k] for k in ("steps", "accuracy")}


def test_the_table_names_every_judged_condition_and_the_choice(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(curve, "MEAN_GAIN", 10.0)
    monkeypatch.setattr(curve, "CLASS_GAIN", 10.0)
    summary = tiny()
    text = curve.format_curve(summary)
    assert "synthetic GRU·VoCu" in text and "synthetic GRU·DeCu" in text and "chosen: 80 steps" in text
    page = curve.curve_markdown(summary)
    assert "last length trained" in page and "first rule" in page and "chosen" in page.lower()
    curve.write_page(summary, tmp_path)
    assert (tmp_path / curve.FIGURE).read_text().lstrip().startswith(("<?xml", "<svg"))


def test_the_cpu_preset_trains_for_the_length_the_committed_curve_chose():
    summary = json.loads(curve.RESULT.read_text())
    assert make_config("cpu").steps == summary["chosen_steps"]
    assert make_config("cpu").seeds == 10


def test_the_committed_curve_and_its_page_agree():
    """The committed result was judged by the first rule; once the corrected ladder runs it is replaced."""
    summary = json.loads(curve.RESULT.read_text())
    page = (curve.BOOK / curve.TABLE).read_text()
    if summary["rule"] == curve.RULE:
        assert curve.choose(summary["rungs"])[0] == summary["chosen_steps"]
        assert page == curve.curve_markdown(summary)
    else:
        assert summary["rule"] == curve.FIRST_RULE and curve.FIRST_RULE in page
        assert f"**Chosen:** {summary['why']}." in page
    assert (curve.BOOK / curve.FIGURE).read_text().lstrip().startswith(("<?xml", "<svg"))


def test_the_deviations_page_states_the_corrected_rule_before_it_runs():
    text = " ".join((curve.BOOK / "deviations.md").read_text().split())
    assert curve.RULE in text

