"""Editions of the claim chapters: the ``arithmetic`` parameter, the verdict scope that names it, and the
comparison of a fast and a float32 edition's verdicts under the rule fixed in memrnn.editions."""
import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from memrnn import claims, editions, evidence, store
from memrnn.book import CHAPTERS, source_notebook
from memrnn.chapter import arithmetic_overrides
from memrnn.cli import main
from memrnn.presets import arithmetic, make_config

ROOT = Path(__file__).resolve().parents[1]
# the chapters that train networks of memrnn.presets' configurations (by memrnn.campaign or memrnn.ablation);
# 09 trains its own flip-flop network, the scorecard trains nothing
TRAINING_CHAPTERS = [name for name in CHAPTERS if any(
    line in (ROOT / "book" / "src" / f"{name}.py").read_text()
    for line in ("from memrnn.campaign import", "from memrnn import ablation"))]


def test_the_chapters_that_train_presets_networks_are_01_to_08():
    assert TRAINING_CHAPTERS == [name for name in CHAPTERS if name[:2] in {f"0{i}" for i in range(1, 9)}]


def test_the_arithmetic_parameter_sets_the_fields_and_the_runs_of_two_editions_differ():
    assert arithmetic_overrides("") == {}
    for preset in ("smoke", "cpu", "gpu"):
        own, fast, float32 = (make_config(preset, **arithmetic_overrides(a)) for a in ("", "fast", "float32"))
        assert (fast.fast, fast.noise, arithmetic(fast)) == (True, "philox", "fast")
        assert (float32.fast, float32.noise, arithmetic(float32)) == (False, "torch", "float32")
        assert store.run_name(fast) != store.run_name(float32)
        # the preset's own arithmetic: the same runs as the edition naming it
        assert store.run_name(own) == store.run_name(fast if own.fast else float32)
    assert arithmetic(make_config("cpu")) == "fast" and arithmetic(make_config("smoke")) == "float32"
    assert arithmetic(make_config("smoke", fast=True)) == "fast=True, noise=torch"  # neither edition


def test_a_bad_arithmetic_is_refused_naming_it_and_the_allowed_values(capsys):
    with pytest.raises(ValueError) as refused:
        arithmetic_overrides("bf16")
    assert str(refused.value) == 'arithmetic=\'bf16\' is not allowed: choose "" (the preset\'s), "fast" or "float32"'
    # by the book runner too, before any chapter executes
    assert main(["book", "run", "--root", str(ROOT), "--preset", "smoke", "--set", "arithmetic=bf16", "--no-build"]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "arithmetic='bf16' is not allowed" in message


def _parameters_cell(name):
    return next(c.source for c in source_notebook(ROOT / "book" / "src" / f"{name}.py").cells
                if "parameters" in c.metadata.get("tags", []))


def _code(name):
    return "\n".join(c.source for c in source_notebook(ROOT / "book" / "src" / f"{name}.py").cells
                     if c.cell_type == "code")


@pytest.mark.parametrize("name", TRAINING_CHAPTERS)
def test_every_training_chapter_takes_the_arithmetic_and_gives_it_to_every_configuration(name):
    """One parameter line in every such chapter, turned into the overrides that every call building a
    configuration (make_config, run_grid, ablation.measure, training_note) receives, directly or through a
    dict built from them."""
    line = next(line for line in _parameters_cell(name).splitlines() if line.startswith("arithmetic"))
    assert line == next(line for line in _parameters_cell("01_task").splitlines() if line.startswith("arithmetic"))
    tree = ast.parse(_code(name))
    carriers = {"overrides"}
    for node in ast.walk(tree):  # names assigned a dict built from the overrides, e.g. 01's `blind`
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                any(isinstance(a, ast.Name) and a.id == "overrides" for a in node.value.args):
            carriers |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    (defined,) = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "overrides" for t in node.targets)]
    assert "**arithmetic_overrides(arithmetic)" in ast.unparse(defined)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", getattr(node.func, "attr", None)) in
             ("make_config", "run_grid", "measure", "training_note")]
    assert calls
    for call in calls:
        assert any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id in carriers for k in call.keywords), \
            f"{name}: {ast.unparse(call)} does not take the arithmetic"


def _nets(mean, n=6, seed=0):
    return mean + 0.01 * np.random.default_rng(seed).standard_normal(n)


def test_a_verdict_names_its_arithmetic_and_keeps_its_estimates_per_dataset(tmp_path, monkeypatch):
    from memrnn.chapter import record_verdict, run_box

    rows = [{"run": "r", "dataset": "mnist", "arch": "gru", "protocol": "decu", "trained_delay_accuracy": [0.9] * 6}]
    scope = evidence.scope(make_config("smoke", **arithmetic_overrides("fast")), rows)
    assert scope.arithmetic == "fast" and "arithmetic fast" in claims.scope_markdown(scope)
    assert evidence.scope(make_config("smoke"), rows).arithmetic == "float32"
    assert "arithmetic: `float32`" in run_box(make_config("cpu", **arithmetic_overrides("float32")), "gru", "decu").data
    trained = {("mnist", a, p): _nets(0.97, seed=i) for i, (a, p) in enumerate([("gru", "decu"), ("gru", "vocu")])}
    long = {("mnist", "gru", "decu"): _nets(0.3), ("mnist", "gru", "vocu"): _nets(0.7, seed=1)}
    c2 = claims.c2_protocols_differ(long, trained, {k: True for k in trained}, scope)
    gap = c2.details["mnist/gru"]
    assert c2.by_dataset["mnist"]["estimates"] == [{"name": "GRU", "estimate": gap["gap"], "low": gap["gap_ci95"][0],
                                                    "high": gap["gap_ci95"][1]}]
    c1 = claims.c1_equal_trained_accuracy(trained, {k: True for k in trained}, scope)
    (pair,) = c1.details["pairs"]
    assert c1.by_dataset["mnist"]["estimates"] == [
        {"name": "GRU · DeCu: median trained-delay accuracy", **dict(zip(("estimate", "low", "high"),
                                                                        c1.details["levels"]["mnist/gru/decu"]))},
        {"name": "GRU · VoCu: median trained-delay accuracy", **dict(zip(("estimate", "low", "high"),
                                                                        c1.details["levels"]["mnist/gru/vocu"]))},
        {"name": "GRU · DeCu minus GRU · VoCu: trained-delay shift", "estimate": pair["diff"],
         "low": pair["ci95"][0], "high": pair["ci95"][1]}]
    monkeypatch.delenv("MEMRNN_CHAPTER", raising=False)
    record = record_verdict(tmp_path, c2)
    assert store.read_json(tmp_path / "verdicts" / "C2.json")["scope"]["arithmetic"] == "fast" == record["scope"]["arithmetic"]


SCOPE = {"preset": "cpu", "datasets": ["fashion-mnist", "mnist-5k"], "archs": ["gru"], "units": 100, "steps": 6000,
         "model_form": "reference model form", "networks": 40, "search": "", "search_iterations": 0,
         "finetune_steps": 0, "lam": 0.0, "per_condition": 10}


def _edition(folder: Path, arithmetic_name: str, verdicts: dict) -> Path:
    """A hand-written verdicts.json: {claim: {dataset: (verdict, [(name, estimate, low, high), ...])}}."""
    folder.mkdir()
    store.write_json(folder / "verdicts.json", {
        claim: {"claim": claim, "verdict": "partly reproduced", "scope": {**SCOPE, "arithmetic": arithmetic_name},
                "by_dataset": {d: {"verdict": v, "estimates": [dict(zip(("name", "estimate", "low", "high"), e))
                                                               for e in estimates]}
                               for d, (v, estimates) in datasets.items()}}
        for claim, datasets in verdicts.items()})
    return folder


FAST = {"C1": {"mnist-5k": ("reproduced", [("GRU · DeCu: median trained-delay accuracy", 0.97, 0.95, 0.98)]),
               "fashion-mnist": ("partly reproduced", [("GRU · DeCu: median trained-delay accuracy", 0.85, 0.82, 0.88)])},
        "C2": {"mnist-5k": ("reproduced", [("GRU", 0.30, 0.20, 0.40)]),
               "fashion-mnist": ("inconclusive", [("GRU", 0.10, -0.05, 0.25)])}}


def _float32(changes):
    """The fast edition's verdicts with float32's ``changes``: {(claim, dataset): (verdict, estimate)}."""
    out = json.loads(json.dumps(FAST))
    for (claim, dataset), (verdict, estimate) in changes.items():
        _, estimates = out[claim][dataset]
        out[claim][dataset] = (verdict, [(estimates[0][0], estimate, estimate - 0.1, estimate + 0.1)])
    return out


@pytest.mark.parametrize("changes, violations", [
    # clean: float32's own intervals differ, its estimates lie inside the fast intervals (ends included)
    ({("C1", "mnist-5k"): ("reproduced", 0.95), ("C2", "fashion-mnist"): ("inconclusive", 0.25)}, []),
    # one verdict changed, its estimate inside
    ({("C2", "fashion-mnist"): ("not reproduced", 0.0)},
     ["C2 on Fashion-MNIST: inconclusive on the fast path, not reproduced in float32"]),
    # one estimate outside the fast interval, the verdict unchanged
    ({("C1", "fashion-mnist"): ("partly reproduced", 0.90)},
     ["C1 on Fashion-MNIST, GRU · DeCu: median trained-delay accuracy: the float32 estimate +0.900 lies outside the "
      "fast edition's 95% interval +0.850 [+0.820, +0.880]"]),
    # not a number is no agreement
    ({("C2", "mnist-5k"): ("reproduced", math.nan)},
     ["C2 on MNIST-5k, GRU: the float32 estimate +nan lies outside the fast edition's 95% interval "
      "+0.300 [+0.200, +0.400]"]),
])
def test_two_editions_are_compared_verdict_by_verdict_and_estimate_by_interval(tmp_path, changes, violations):
    fast = _edition(tmp_path / "fast", "fast", FAST)
    float32 = _edition(tmp_path / "float32", "float32", _float32(changes))
    comparison = editions.compare(fast, float32)
    assert comparison.violations == violations and comparison.equivalent == (not violations)
    assert [(r["claim"], r["dataset"]) for r in comparison.rows] == [
        ("C1", "mnist-5k"), ("C1", "fashion-mnist"), ("C2", "mnist-5k"), ("C2", "fashion-mnist")]
    row = comparison.rows[0]
    assert row["statistics"][0]["fast"] == (0.97, 0.95, 0.98) and row["fast"] == "reproduced"
    text = editions.markdown(comparison)
    assert editions.RULE in text and text.count("\n| C") == 4 and all(v in text for v in violations)
    assert ("the two editions are equivalent." in text) == (not violations)


def test_an_interval_too_wide_to_bound_contains_every_estimate_but_nan(tmp_path):
    """Two networks give an order-statistic interval of (-inf, inf): no evidence against equivalence."""
    unbounded = json.loads(json.dumps(FAST))
    unbounded["C2"]["mnist-5k"] = ("inconclusive", [("GRU", 0.0, -math.inf, math.inf)])
    fast = _edition(tmp_path / "fast", "fast", unbounded)
    float32 = json.loads(json.dumps(unbounded))
    assert editions.compare(fast, _edition(tmp_path / "same", "float32", float32)).equivalent
    float32["C2"]["mnist-5k"] = ("inconclusive", [("GRU", math.nan, -math.inf, math.inf)])
    assert editions.compare(fast, _edition(tmp_path / "nan", "float32", float32)).violations == [
        "C2 on MNIST-5k, GRU: the float32 estimate +nan lies outside the fast edition's 95% interval +0.000 [-inf, +inf]"]


def test_what_one_edition_lacks_is_a_violation(tmp_path):
    fewer = json.loads(json.dumps(FAST))
    del fewer["C2"]
    fewer["C1"]["mnist-5k"] = ("reproduced", [])
    comparison = editions.compare(_edition(tmp_path / "fast", "fast", FAST),
                                  _edition(tmp_path / "float32", "float32", fewer))
    assert comparison.violations == [
        "C1 on MNIST-5k, GRU · DeCu: median trained-delay accuracy: measured only in the fast edition",
        "C2: no verdict in the float32 edition"]


def test_editions_that_cannot_be_told_apart_or_differ_in_scale_are_refused(tmp_path):
    fast = _edition(tmp_path / "fast", "fast", FAST)
    float32 = _edition(tmp_path / "float32", "float32", FAST)
    with pytest.raises(ValueError, match="holds the 'float32' edition .C1., not the 'fast' one: give the editions "
                                         "in the order fast then float32"):
        editions.compare(float32, fast)
    unnamed = json.loads((fast / "verdicts.json").read_text())
    del unnamed["C2"]["scope"]["arithmetic"]
    store.write_json(tmp_path / "old" / "verdicts.json", unnamed)
    with pytest.raises(ValueError, match="C2 in .*verdicts.json does not name its arithmetic"):
        editions.compare(tmp_path / "old", float32)
    shorter = json.loads((float32 / "verdicts.json").read_text())
    shorter["C1"]["scope"]["steps"] = 3000
    store.write_json(float32 / "verdicts.json", shorter)
    with pytest.raises(ValueError, match="C1's scope differs between the editions in steps"):
        editions.compare(fast, float32)
    store.write_json(tmp_path / "empty" / "verdicts.json", {})
    with pytest.raises(ValueError, match="empty/verdicts.json holds no verdict"):
        editions.compare(tmp_path / "empty", float32)
    with pytest.raises(ValueError, match="nowhere/verdicts.json not found"):
        editions.compare(tmp_path / "nowhere", float32)


def test_book_compare_prints_the_table_and_the_decision(tmp_path, capsys):
    fast = _edition(tmp_path / "fast", "fast", FAST)
    same = _edition(tmp_path / "same", "float32", FAST)
    changed = _edition(tmp_path / "changed", "float32", _float32({("C2", "mnist-5k"): ("partly reproduced", 0.3)}))
    assert main(["book", "compare", str(fast), str(same)]) == 0
    out = capsys.readouterr().out
    assert "**Decision:** the two editions are equivalent." in out
    assert "| C2 | MNIST-5k | reproduced | reproduced | GRU | +0.300 [+0.200, +0.400] | +0.300 [+0.200, +0.400] | yes |" in out
    assert main(["book", "compare", str(fast), str(changed)]) == 1
    out = capsys.readouterr().out
    assert "not equivalent (1 violation)" in out and "- C2 on MNIST-5k: reproduced on the fast path, partly reproduced in float32" in out
    assert main(["book", "compare", str(same), str(fast)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memrnn: error: book: ") and err.count("\n") == 1 and "not the 'fast' one" in err
