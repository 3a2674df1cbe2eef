"""Every claim's verdict rule on synthetic worlds where the claim is true, false or untestable (each
loophole found in an earlier rule is a false world that must not pass), the false-positive rate of
every decision at its threshold, and the coverage of every interval the verdicts use, by simulation
with fixed seeds. Rates are checked against their bound plus three Monte-Carlo standard errors."""
import dataclasses
import json

import dask.system
import numpy as np
import pytest
import torch

from memrnn import claims, evidence
from memrnn.claims import Scope
from memrnn.display import OUTCOMES, verdict_box
from memrnn.stats import correlate, median_ci, shift_ci, spearman_ci

SCOPE = Scope("smoke", ("synthetic",), ("gru", "lstm"), 16, 100, "reference GRU/LSTM", 10, "lm")
ARCHS, PAPER = ("gru", "lstm"), ("decu", "vocu")


def _rate_ok(hits, sims, bound=0.05):
    return hits / sims <= bound + 3 * np.sqrt(bound * (1 - bound) / sims)


def _nets(mean, sd=0.005, n=5, seed=0):
    return mean + sd * np.random.default_rng(seed).standard_normal(n)


def _grid(means, sd=0.005, n=5):
    return {("mnist", arch, protocol): _nets(m, sd, n, seed=i) for i, ((arch, protocol), m) in enumerate(means.items())}


def _solved(n=5):
    return _grid({(a, p): 0.97 for a in ARCHS for p in PAPER}, n=n)


def _check(verdict, expected):
    assert verdict.verdict == expected, (verdict.reason, verdict.statistic)
    assert verdict.rule and verdict.statistic and verdict.reason and verdict.premises
    json.dumps(verdict.to_dict())  # a verdict is stored as JSON


# C1

def test_claims_c1_equivalence_and_floor_on_bounds():
    equal = {("gru", "decu"): 0.97, ("gru", "vocu"): 0.975, ("lstm", "decu"): 0.965}
    _check(claims.c1_equal_trained_accuracy(_grid(equal), SCOPE), "reproduced")
    assert claims.c1_equal_trained_accuracy(_grid(equal, sd=0.03), SCOPE).verdict != "reproduced"
    _check(claims.c1_equal_trained_accuracy(_grid({**equal, ("lstm", "vocu"): 0.70}), SCOPE), "not reproduced")
    # one condition, or too few networks: nothing to compare
    _check(claims.c1_equal_trained_accuracy(_grid({("gru", "decu"): 0.97}), SCOPE), "inconclusive")
    _check(claims.c1_equal_trained_accuracy(_grid(equal, n=3), SCOPE), "inconclusive")
    # a mean of 0.91 is not a lower bound of 0.90: one failed seed keeps C1 from "reproduced"
    failed = _grid(equal)
    failed[("mnist", "gru", "decu")][0] = 0.5
    assert claims.c1_equal_trained_accuracy(failed, SCOPE).verdict != "reproduced"


def test_claims_c1_false_positive_rates_at_the_floor_and_margin():
    rng, sims = np.random.default_rng(1), 400
    skewed = lambda n, median: 1 - (1 - median) * np.exp(0.5 * rng.standard_normal(n))  # median exactly ``median``
    floor = sum(median_ci(skewed(5, 0.90))[1] >= 0.90 for _ in range(sims))
    margin = sum(np.abs(shift_ci(skewed(5, 0.95) + 0.03, skewed(5, 0.95))[1:3]).max() <= 0.03 for _ in range(sims))
    assert _rate_ok(floor, sims) and _rate_ok(margin, sims)


# C2

def test_claims_c2_protocol_effect_within_each_architecture():
    differ = {("gru", "decu"): 0.4, ("gru", "vocu"): 0.8, ("lstm", "decu"): 0.3, ("lstm", "vocu"): 0.6}
    verdict = claims.c2_protocols_differ(_grid(differ, sd=0.02), _solved(), SCOPE)
    _check(verdict, "reproduced")
    assert verdict.details["mnist/gru"]["best"] == "vocu" and "vocu longest" in verdict.statistic
    same = {("gru", "decu"): 0.8, ("gru", "vocu"): 0.8, ("lstm", "decu"): 0.3, ("lstm", "vocu"): 0.3}
    _check(claims.c2_protocols_differ(_grid(same, sd=0.01), _solved(), SCOPE), "not reproduced")
    _check(claims.c2_protocols_differ(_grid({**same, ("gru", "vocu"): 0.85}, sd=0.01), _solved(), SCOPE),
           "partly reproduced")


def test_claims_c2_undertrained_condition_is_inconclusive():
    """decu never learned the task: its long-delay accuracy is low for another reason."""
    differ = {("gru", "decu"): 0.2, ("gru", "vocu"): 0.8, ("lstm", "decu"): 0.15, ("lstm", "vocu"): 0.6}
    trained = _solved()
    trained[("mnist", "gru", "decu")] = _nets(0.25)
    verdict = claims.c2_protocols_differ(_grid(differ, sd=0.02), trained, SCOPE)
    _check(verdict, "inconclusive")
    assert "premise unmet" in verdict.reason and "mnist/gru/decu" in verdict.reason


def test_claims_c2_false_positive_rates():
    rng, sims = np.random.default_rng(2), 300
    null, edge = 0, 0
    for _ in range(sims):
        world = {("mnist", a, p): rng.beta(2, 3, 5) for a in ARCHS for p in PAPER}
        null += claims.c2_protocols_differ(world, _solved(), SCOPE).verdict in ("reproduced", "partly reproduced")
        gap = {("mnist", a, p): rng.beta(2, 3, 5) + 0.10 * (p == "vocu") for a in ARCHS for p in PAPER}
        edge += claims.c2_protocols_differ(gap, _solved(), SCOPE).verdict == "reproduced"
    assert _rate_ok(null, sims) and _rate_ok(edge, sims)


# C3

def _c3(n=5, k=10, s=8, own=1.0, slow=1e-3, visited=1.0, boundary=0.0, separation=1.0, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((n, k, s))
    points *= separation / np.linalg.norm(points, axis=-1, keepdims=True)
    decoded = np.tile(np.arange(k), (n, 1))
    wrong = rng.random((n, k)) >= own
    decoded[wrong] = (decoded[wrong] + 1) % k
    return {"speed": np.full((n, k), slow), "speed_visited": np.full((n, k), visited), "decoded": decoded,
            "in_region": rng.random((n, k)) >= boundary, "moved": np.full((n, k), 0.3), "points": points,
            "spread": np.full((n, k), 0.1)}


def test_claims_c3_reachable_slow_distinct_point_per_class():
    _check(claims.c3_slow_point_per_memory({"lm": _c3(), "reference": _c3(seed=1)}, _solved(), SCOPE), "reproduced")
    _check(claims.c3_slow_point_per_memory({"lm": _c3()}, _solved(), SCOPE), "partly reproduced")  # one search: capped
    collapsed = {"lm": _c3(separation=0.01), "reference": _c3(separation=0.01)}
    _check(claims.c3_slow_point_per_memory(collapsed, _solved(), SCOPE), "not reproduced")
    # slower than a centroid no trajectory visits, but not slower than the states the network does visit
    _check(claims.c3_slow_point_per_memory({"lm": _c3(visited=5e-3), "reference": _c3(visited=5e-3)}, _solved(),
                                           SCOPE), "not reproduced")


def test_claims_c3_points_on_the_clip_boundary_do_not_count():
    verdict = claims.c3_slow_point_per_memory({"lm": _c3(), "reference": _c3(boundary=0.5, seed=1)}, _solved(), SCOPE)
    _check(verdict, "partly reproduced")
    assert 0.3 < verdict.details["reference"]["on_boundary"] < 0.7 and "clip boundary" in verdict.statistic


def test_claims_c3_false_positive_rate_below_the_threshold():
    """A true share of 0.85 (networks differ: clustered points) must not pass for "at least 0.9"."""
    rng, sims, hits = np.random.default_rng(3), 400, 0
    for _ in range(sims):
        per_network = rng.beta(8.5, 1.5, 5)[:, None]  # mean 0.85
        m = _c3()
        m["in_region"] = rng.random((5, 10)) < per_network
        hits += claims.c3_slow_point_per_memory({"lm": m, "reference": m}, _solved(), SCOPE).verdict == "reproduced"
    assert _rate_ok(hits, sims)


# C4

def _c4_rows(slopes, n=5, between=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for arch, slope in slopes.items():
        for protocol in PAPER:
            offset = between * (protocol == "vocu")
            for net in range(n):
                for c in range(10):
                    speed = rng.uniform(-4, -1) - 3 * offset
                    rows.append({"run": f"{arch}-{protocol}", "seed": net, "class": c, "dataset": "mnist",
                                 "arch": arch, "protocol": protocol, "log10_speed": speed,
                                 "long_delay_accuracy": 0.5 + offset + slope * speed + 0.05 * rng.normal()})
    return rows


def test_claims_c4_within_conditions_decides():
    _check(claims.c4_speed_predicts_memory(_c4_rows({"gru": -0.1, "lstm": -0.1}), _solved(), SCOPE), "reproduced")
    _check(claims.c4_speed_predicts_memory(_c4_rows({"gru": -0.1, "lstm": 0.0}), _solved(), SCOPE),
           "partly reproduced")


def test_claims_c4_association_between_protocols_only_does_not_pass():
    """vocu is slower and better than decu, r = 0 inside every condition: pooling would pass."""
    verdict = claims.c4_speed_predicts_memory(_c4_rows({"gru": 0.0, "lstm": 0.0}, between=1.0), _solved(), SCOPE)
    assert verdict.details["mnist/gru"]["pooled_over_protocols"]["ci95"][1] < -0.3
    assert verdict.verdict in ("not reproduced", "inconclusive"), verdict.reason


def test_claims_c4_false_positive_rate():
    sims = 150
    hits = sum(claims.c4_speed_predicts_memory(_c4_rows({"gru": 0.0, "lstm": 0.0}, seed=s), _solved(), SCOPE).verdict
               in ("reproduced", "partly reproduced") for s in range(sims))
    assert _rate_ok(hits, sims)


# C5

INTRODUCED = np.array([0, 0, 80, 160, 260, 360, 480, 620, 780, 980]) / 1400


def _c5(follows=1.0, earlier_is_better=1.0, by_index=0.0, n=5, seed=0):
    """Appearance as a fraction of training: vocu's points form ``follows`` x their class's introduction
    later; long-delay accuracy falls by ``earlier_is_better`` x appearance; ``by_index``: every class
    forms later the larger its index, in both protocols (the class-order confound: vocu introduces
    classes in index order)."""
    rng = np.random.default_rng(seed)
    appears, accuracy = {}, {}
    for arch in ARCHS:
        for protocol in PAPER:
            base = 0.3 + by_index * np.arange(10) / 10 + follows * 0.3 * INTRODUCED * (protocol == "vocu")
            network = 0.1 * rng.random((n, 1))
            appears[(arch, protocol)] = np.clip(base + network + 0.01 * rng.standard_normal((n, 10)), 0, 1)
            first = np.median(appears[(arch, protocol)], 1)
            accuracy[(arch, protocol)] = 0.9 - earlier_is_better * first + 0.02 * rng.standard_normal(n)
    appears[("gru", "vocu")][0, 3] = np.nan  # a point that was never traced: missing, not late
    return {"appears": appears, "introduced": {a: INTRODUCED for a in ARCHS}, "long_accuracy": accuracy}


def test_claims_c5_formation_against_decu_not_class_order():
    _check(claims.c5_formation_explains(**_c5(), trained=_solved(), scope=SCOPE), "reproduced")
    # classes form in index order in both protocols: vocu's order alone would look like "formed once introduced"
    confounded = claims.c5_formation_explains(**_c5(follows=0, by_index=0.6), trained=_solved(), scope=SCOPE)
    assert not any(t["low"] > 0 for t in confounded.details["tests"] if t["group"].endswith("(a)"))
    _check(claims.c5_formation_explains(**_c5(-1, -1), trained=_solved(), scope=SCOPE), "not reproduced")
    # no effect at all: 10 classes and 10 networks cannot exclude the named effects
    verdict = claims.c5_formation_explains(**_c5(0, 0), trained=_solved(), scope=SCOPE)
    _check(verdict, "inconclusive")
    assert "too little power" in verdict.reason


def test_claims_c5_untraced_networks_are_missing_and_ties_are_ties():
    world = _c5()
    world["appears"][("lstm", "decu")][:2] = np.nan  # two networks never traced
    world["appears"][("lstm", "vocu")] = world["appears"][("lstm", "decu")].copy()
    verdict = claims.c5_formation_explains(**world, trained=_solved(), scope=SCOPE)
    assert verdict.details["lstm"]["earlier"]["forms_earlier"] == "tie"
    assert "10 networks" in verdict.statistic and "6 networks" in verdict.statistic  # GRU 10, LSTM 6 traced


def test_claims_c5_false_positive_rate():
    sims, hits = 200, 0
    for s in range(sims):
        hits += claims.c5_formation_explains(**_c5(0, 0, seed=s), trained=_solved(), scope=SCOPE).verdict in (
            "reproduced", "partly reproduced")
    assert _rate_ok(hits, sims)


# C6

def _c6(gain, trained=0.0, seeds=10, parents=PAPER, damage=0.0, centermass=None, sd=0.03, seed=0):
    out = {}
    for i, key in enumerate((a, p) for a in ARCHS for p in parents):
        rng = np.random.default_rng(seed * 100 + i)
        parent = 0.4 + 0.1 * rng.standard_normal(seeds)
        control = parent - damage + sd * rng.standard_normal(seeds)
        penalised = parent + gain + sd * rng.standard_normal(seeds)
        out[key] = {"parent": {"long": parent, "trained": np.full(seeds, 0.97)},
                    "control": {"long": control, "trained": np.full(seeds, 0.97)},
                    "slowpoints": {"long": penalised, "trained": 0.97 + trained + 0.002 * rng.standard_normal(seeds)},
                    "specificity": {"slowpoints": penalised,
                                    "centermass": penalised - (gain if centermass is None else centermass)}}
    return out


def test_claims_c6_gain_over_parent_and_control():
    verdict = claims.c6_speed_penalty_helps(_c6(0.2), SCOPE)
    _check(verdict, "reproduced")
    assert "specific to slow points" in verdict.statistic
    assert "centermass does as well" in claims.c6_speed_penalty_helps(_c6(0.2, centermass=-0.05), SCOPE).statistic
    _check(claims.c6_speed_penalty_helps(_c6(0.05), SCOPE), "partly reproduced")  # reliable but not dramatic
    _check(claims.c6_speed_penalty_helps(_c6(0.0), SCOPE), "not reproduced")
    _check(claims.c6_speed_penalty_helps(_c6(0.2, trained=-0.05), SCOPE), "not reproduced")  # memory bought with the task
    _check(claims.c6_speed_penalty_helps(_c6(0.2, parents=("decu",)), SCOPE), "inconclusive")
    _check(claims.c6_speed_penalty_helps(_c6(0.2, seeds=4), SCOPE), "inconclusive")


def test_claims_c6_damaged_control_does_not_make_an_unchanged_network_dramatic():
    _check(claims.c6_speed_penalty_helps(_c6(0.0, damage=0.2), SCOPE), "not reproduced")


def test_claims_c6_false_positive_rates():
    sims = 300
    null = sum(claims.c6_speed_penalty_helps(_c6(0.0, seed=s), SCOPE).verdict in ("reproduced", "partly reproduced")
               for s in range(sims))
    edge = sum(claims.c6_speed_penalty_helps(_c6(0.10, sd=0.05, seed=s), SCOPE).verdict == "reproduced"
               for s in range(sims))
    assert _rate_ok(null, sims) and _rate_ok(edge, sims)


# holm, markdown, evidence

def test_claims_holm_and_markdown():
    assert claims.holm([0.01, 0.04, 0.03]) == [True, False, False]
    assert claims.holm([0.01, 0.02, 0.02]) == [True, True, True]
    for claim in claims.RULES:
        assert claims.rule_text(claim) == claims._rule(claims.RULES[claim]) and "Reproduced" in claims.rule_text(claim)
    text = verdict_box(claims.c6_speed_penalty_helps(_c6(0.2, seeds=4), SCOPE)).data
    for part in (">C6: inconclusive</strong>", "Why: premise unmet", "<details>", "<em>Premises:</em>", "unmet",
                 "detectable", "preset <code>smoke</code>", OUTCOMES["inconclusive"][1]):
        assert part in text


def test_claims_evidence_refuses_repeated_conditions_and_completes_scopes():
    rows = [{"run": f"r{i}", "dataset": "mnist", "arch": "gru", "protocol": "decu", "trained_delay_accuracy": [0.9]}
            for i in range(2)]
    with pytest.raises(ValueError, match="repeated condition.*mnist/gru/decu in runs r0, r1"):
        evidence.trained_accuracy(rows)
    from memrnn.presets import make_config

    config = make_config("smoke")
    scope = evidence.scope(config, rows[:1], "reference Adam", lam=1e-3)
    assert scope.search_iterations == config.search_iterations and scope.finetune_steps == config.finetune_steps
    assert "λ = 0.001" in claims.scope_markdown(scope) and "reference-search iterations" in claims.scope_markdown(scope)


# coverage

def _covers(coverage, sims, nominal=0.93):
    """Coverage at least ``nominal``, up to three Monte-Carlo standard errors."""
    return coverage >= nominal - 3 * np.sqrt(nominal * (1 - nominal) / sims)


def _coverage(draw, interval, truth, sims=1000, seed=0):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(sims):
        low, high = interval(*draw(rng))
        hits += low <= truth <= high
    return hits / sims


def _accuracy(r, n, fail=0.0):
    """Skewed accuracies near 0.95 (beta), a share ``fail`` of networks failed (chance, 0.1)."""
    x = r.beta(19, 1, n)
    return np.where(r.random(n) < fail, 0.1 + 0.02 * r.random(n), x)


def test_claims_interval_coverage_skewed_and_contaminated():
    """The verdicts' intervals cover at least 93% for skewed, bounded accuracies and failed seeds."""
    big = np.random.default_rng(9)
    for n, fail in ((5, 0.0), (5, 0.1), (10, 0.1), (10, 0.2)):
        truth = np.median(_accuracy(big, 400_000, fail))
        assert _covers(_coverage(lambda r: (_accuracy(r, n, fail),), lambda x: median_ci(x)[1:], truth, 4000), 4000)
        a, b = _accuracy(big, 2000, fail), _accuracy(big, 2000, fail) - 0.05
        shift = np.median(np.subtract.outer(a, b))
        assert _covers(_coverage(lambda r: (_accuracy(r, n, fail), _accuracy(r, n, fail) - 0.05),
                                 lambda x, y: shift_ci(x, y)[1:3], shift, sims=1000), 1000)


def test_claims_correlation_coverage_at_five_networks():
    rho = -0.6
    cov = [[1, rho], [rho, 1]]
    assert _coverage(lambda r: r.multivariate_normal([0, 0], cov, 5).T, lambda x, y: spearman_ci(x, y)["ci95"],
                     6 / np.pi * np.arcsin(rho / 2)) >= 0.93

    # correlation over (network, class) with networks as the unit (C4): 5 networks x 10 classes
    def clustered(r):
        b = r.multivariate_normal([0, 0], [[0.5, -0.3], [-0.3, 0.5]], 5)
        w = r.multivariate_normal([0, 0], [[1, -0.3], [-0.3, 1]], (5, 10))
        xy = (b[:, None] + w).reshape(-1, 2)
        return [{"run": "r", "seed": i // 10, "log10_speed": x, "long_delay_accuracy": y}
                for i, (x, y) in enumerate(xy)],

    pooled_rho = (-0.3 - 0.3) / 1.5
    assert _coverage(clustered, lambda rows: correlate(rows)["spearman"]["ci95"],
                     6 / np.pi * np.arcsin(pooled_rho / 2), sims=300) >= 0.93


def test_claims_verdict_recorded_with_scope_and_staleness(tmp_path, monkeypatch):
    from memrnn.book import read_verdicts, stale_reason
    from memrnn.chapter import record_verdict

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    verdict = claims.c6_speed_penalty_helps(_c6(0.2), SCOPE)
    record_verdict(tmp_path, verdict, code_sha256="abc", parameters={"preset": "smoke"})
    record_verdict(tmp_path, "C1", "partly reproduced", "old style", "cpu", 30)
    c1, c6 = read_verdicts(tmp_path)
    assert c6["verdict"] == "reproduced" and c6["scope"]["archs"] == ["gru", "lstm"] and c6["rule"] == verdict.rule
    assert c6["preset"] == "smoke" and c6["networks"] == 10
    assert c6["device"] == f"CPU ({dask.system.CPU_COUNT} cores)"
    assert stale_reason(c6, "abc", {"preset": "smoke"}) is None
    assert stale_reason(c6, "abd", {"preset": "smoke"}) == "recorded by other chapter code"
    assert stale_reason(c6, "abc", {"preset": "cpu"}) == "recorded with other parameters"
    assert stale_reason(c1, "abc", {"preset": "smoke"}) is not None
    with pytest.raises(ValueError):
        record_verdict(tmp_path, "C2", "sort of", "", "cpu", 1)


def test_scorecard_marks_a_verdict_its_chapter_did_not_produce(tmp_path, monkeypatch):
    """A verdict is stale when its chapter's committed notebook carries another code hash or preset."""
    import nbformat

    from memrnn.book import stale_verdicts
    from memrnn.chapter import record_verdict

    scope = claims.Scope("cpu", ("mnist-5k",), ("gru",), 100, 3000, "reference model form", 10)
    verdict = claims.Verdict("C1", "reproduced", "s", "r", {}, scope)
    notebook = nbformat.v4.new_notebook(metadata={"memrnn": {"preset": "cpu", "code_sha256": "abc"}})
    nbformat.write(notebook, tmp_path / "01_task.ipynb")
    monkeypatch.setenv("MEMRNN_CHAPTER", "01_task")
    for sha, preset, expected in (("abc", "cpu", {}), ("abd", "cpu", {"C1": "recorded by other chapter code"}),
                                  ("abc", "smoke", {"C1": "recorded at another preset"})):
        monkeypatch.setenv("MEMRNN_CHAPTER_SHA256", sha)
        record_verdict(tmp_path / "runs", dataclasses.replace(verdict, scope=dataclasses.replace(scope, preset=preset)))
        assert stale_verdicts(tmp_path / "runs", tmp_path) == expected
    monkeypatch.delenv("MEMRNN_CHAPTER")
    record_verdict(tmp_path / "runs", verdict)
    assert stale_verdicts(tmp_path / "runs", tmp_path) == {"C1": "recorded outside `memrnn book run`"}
