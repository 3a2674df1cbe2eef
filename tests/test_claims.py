"""Every claim's verdict rule on synthetic results where the claim is false, true and borderline,
and the coverage of every interval the package reports at five networks."""
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from memrnn import claims
from memrnn.claims import Scope
from memrnn.stats import correlate, mean_ci, spearman_ci, welch_ci

SCOPE = Scope("smoke", ("synthetic",), ("gru", "lstm"), 16, 100, "reference GRU/LSTM", 10, "lm")
RNG = np.random.default_rng(0)


def _nets(mean, sd=0.005, n=5, seed=0):
    return mean + sd * np.random.default_rng(seed).standard_normal(n)


def _grid(means, sd=0.005):
    return {("mnist", arch, protocol): _nets(m, sd, seed=i)
            for i, ((arch, protocol), m) in enumerate(means.items())}


def _check(verdict, expected):
    assert verdict.verdict == expected, verdict.statistic
    assert verdict.rule and verdict.statistic
    json.dumps(verdict.to_dict())  # a verdict is stored as JSON


def test_claims_c1_equivalence():
    equal = {("gru", "decu"): 0.97, ("gru", "vocu"): 0.975, ("lstm", "decu"): 0.965}
    _check(claims.c1_equal_trained_accuracy(_grid(equal), SCOPE), "reproduced")
    # the same means with a large spread between networks cannot show equivalence within ±0.03
    _check(claims.c1_equal_trained_accuracy(_grid(equal, sd=0.03), SCOPE), "partly reproduced")
    _check(claims.c1_equal_trained_accuracy(_grid({**equal, ("lstm", "vocu"): 0.93}), SCOPE), "partly reproduced")
    _check(claims.c1_equal_trained_accuracy(_grid({**equal, ("lstm", "vocu"): 0.70}), SCOPE), "not reproduced")
    _check(claims.c1_equal_trained_accuracy(_grid({("gru", "decu"): 0.97}), SCOPE), "not reproduced")


def test_claims_c2_protocol_effect_within_each_architecture():
    differ = {("gru", "decu"): 0.4, ("gru", "vocu"): 0.8, ("lstm", "decu"): 0.3, ("lstm", "vocu"): 0.6}
    verdict = claims.c2_protocols_differ(_grid(differ, sd=0.02), SCOPE)
    _check(verdict, "reproduced")
    assert verdict.details["mnist/gru"]["best"] == "vocu" and "vocu longest" in verdict.statistic
    # architectures differ, protocols do not: pooling would show an effect, within-architecture tests do not
    same = {("gru", "decu"): 0.8, ("gru", "vocu"): 0.8, ("lstm", "decu"): 0.3, ("lstm", "vocu"): 0.3}
    _check(claims.c2_protocols_differ(_grid(same, sd=0.05), SCOPE), "not reproduced")
    # a reliable but small gap in one architecture only
    small = {**same, ("gru", "vocu"): 0.85}
    _check(claims.c2_protocols_differ(_grid(small, sd=0.01), SCOPE), "partly reproduced")


def _c3(n=5, k=10, s=8, own=1.0, slow=1e-3, spread=0.1, separation=1.0, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((n, k, s))
    points *= separation / np.linalg.norm(points, axis=-1, keepdims=True)
    decoded = np.tile(np.arange(k), (n, 1))
    wrong = rng.random((n, k)) >= own
    decoded[wrong] = (decoded[wrong] + 1) % k
    return {"speed": np.full((n, k), slow), "speed_at_centroid": np.full((n, k), 1.0), "decoded": decoded,
            "points": points, "spread": np.full((n, k), spread)}


def test_claims_c3_distinct_slow_point_per_class_under_both_searches():
    _check(claims.c3_slow_point_per_memory({"lm": _c3(), "reference-adam": _c3(seed=1)}, SCOPE), "reproduced")
    # one search only: capped
    _check(claims.c3_slow_point_per_memory({"lm": _c3()}, SCOPE), "partly reproduced")
    # all classes collapse onto nearby points, closer than a class's spread: no point per memory
    _check(claims.c3_slow_point_per_memory({"lm": _c3(separation=0.01), "reference-adam": _c3(separation=0.01)},
                                           SCOPE), "not reproduced")
    # points no slower than the centroid
    _check(claims.c3_slow_point_per_memory({"lm": _c3(slow=0.5), "reference-adam": _c3(slow=0.5)}, SCOPE),
           "not reproduced")
    # the searches disagree: never reproduced, and said
    verdict = claims.c3_slow_point_per_memory({"lm": _c3(), "reference-adam": _c3(own=0.6)}, SCOPE)
    _check(verdict, "partly reproduced")
    assert "disagree" in verdict.statistic and not verdict.details["methods_agree"]


def _c4_rows(slopes, n=5, between=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for arch, slope in slopes.items():
        for protocol in ("decu", "vocu"):
            for net in range(n):
                offset = between * (arch == "gru")
                for c in range(10):
                    speed = rng.uniform(-4, -1) - 3 * offset
                    rows.append({"run": f"{arch}-{protocol}", "seed": net, "class": c, "dataset": "mnist",
                                 "arch": arch, "protocol": protocol, "log10_speed": speed,
                                 "long_delay_accuracy": 0.5 + offset + slope * speed + 0.05 * rng.normal()})
    return rows


def test_claims_c4_within_architecture_decides_not_pooled():
    _check(claims.c4_speed_predicts_memory(_c4_rows({"gru": -0.1, "lstm": -0.1}), SCOPE), "reproduced")
    _check(claims.c4_speed_predicts_memory(_c4_rows({"gru": -0.1, "lstm": 0.0}), SCOPE), "partly reproduced")
    # no relation within either architecture; GRU is slower and better, so the pooled correlation is strong
    verdict = claims.c4_speed_predicts_memory(_c4_rows({"gru": 0.0, "lstm": 0.0}, between=0.3), SCOPE)
    assert verdict.details["pooled"]["r"] < -0.3 and verdict.details["pooled"]["ci95"][1] < 0
    _check(verdict, "not reproduced")


def _c5(appears_at_introduction=True, earlier_is_better=True, n=5, seed=0):
    rng = np.random.default_rng(seed)
    introduced = np.tile([0, 0, 80, 160, 260, 360, 480, 620, 780, 980], (n, 1)).astype(float)
    appears = introduced + 20 if appears_at_introduction else np.full_like(introduced, 1200.0)
    appears[0, 3] = np.nan  # a point that was never traced
    fraction, accuracy = {}, {}
    for arch in ("gru", "lstm"):
        for i, protocol in enumerate(("decu", "vocu", "none")):
            f = 0.2 + 0.2 * i + 0.02 * rng.standard_normal(n)
            fraction[(arch, protocol)] = f
            accuracy[(arch, protocol)] = (0.9 - f if earlier_is_better else 0.5 + 0.02 * rng.standard_normal(n))
    return appears, introduced, fraction, accuracy


def test_claims_c5_formation_tests_that_can_fail():
    _check(claims.c5_formation_explains(*_c5(), SCOPE), "reproduced")
    # every point appears at the end of training: after its introduction, but no more than chance says
    verdict = claims.c5_formation_explains(*_c5(appears_at_introduction=False), SCOPE)
    assert verdict.details["a"]["fraction_after"] == 1.0 and verdict.details["a"]["p"] > 0.05
    _check(verdict, "partly reproduced")
    _check(claims.c5_formation_explains(*_c5(False, False), SCOPE), "not reproduced")
    _check(claims.c5_formation_explains(*_c5(True, False), SCOPE), "partly reproduced")


def _c6(gain, trained=0.0, seeds=10, parents=("decu", "vocu"), sd=0.03):
    out = {}
    for i, key in enumerate((a, p) for a in ("gru", "lstm") for p in parents):
        rng = np.random.default_rng(i)
        control = 0.4 + 0.1 * rng.standard_normal(seeds)
        out[key] = {"long_control": control, "long_slowpoints": control + gain + sd * rng.standard_normal(seeds),
                    "trained_control": np.full(seeds, 0.97),
                    "trained_slowpoints": 0.97 + trained + 0.002 * rng.standard_normal(seeds)}
    return out


def test_claims_c6_dramatic_gain_paired_t_intervals():
    _check(claims.c6_speed_penalty_helps(_c6(0.2), SCOPE), "reproduced")
    _check(claims.c6_speed_penalty_helps(_c6(0.05), SCOPE), "partly reproduced")  # reliable but not dramatic
    _check(claims.c6_speed_penalty_helps(_c6(0.2, seeds=5), SCOPE), "partly reproduced")
    _check(claims.c6_speed_penalty_helps(_c6(0.2, parents=("decu",)), SCOPE), "partly reproduced")
    _check(claims.c6_speed_penalty_helps(_c6(0.0), SCOPE), "not reproduced")
    _check(claims.c6_speed_penalty_helps(_c6(0.2, trained=-0.05), SCOPE), "not reproduced")  # memory bought with the task


def test_claims_rules_and_markdown():
    for claim in claims.RULES:
        assert claims.rule_markdown(claim).startswith(f"**Verdict rule ({claim}).** ")
    text = claims.verdict_markdown(claims.c6_speed_penalty_helps(_c6(0.0), SCOPE))
    assert "**C6: not reproduced.**" in text and "preset `smoke`" in text and "10 networks" in text


def _coverage(draw, interval, truth, sims=1000, seed=0):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(sims):
        low, high = interval(*draw(rng))
        hits += low <= truth <= high
    return hits / sims


def test_claims_interval_coverage_at_five_networks():
    """Nominal 95% intervals cover a known value at least 93% of the time with n = 5."""
    assert _coverage(lambda r: (r.normal(0.3, 0.1, 5),), lambda x: mean_ci(x)[1:], 0.3) >= 0.93
    # paired differences: per-seed control varies a lot, the paired difference less
    assert _coverage(lambda r: (lambda c: (c + 0.1 + r.normal(0, 0.02, 5), c))(r.normal(0.4, 0.2, 5)),
                     lambda a, b: mean_ci(a - b)[1:], 0.1) >= 0.93
    assert _coverage(lambda r: (r.normal(0.9, 0.01, 5), r.normal(0.8, 0.05, 5)),
                     lambda a, b: welch_ci(a, b)[1:], 0.1) >= 0.93
    # Spearman over 5 independent networks (C5 b): bivariate normal, rho_s = 6/pi asin(rho/2)
    rho = -0.6
    cov = [[1, rho], [rho, 1]]
    assert _coverage(lambda r: r.multivariate_normal([0, 0], cov, 5).T, lambda x, y: spearman_ci(x, y)["ci95"],
                     6 / np.pi * np.arcsin(rho / 2)) >= 0.93

    # correlation over (network, class) with networks as the unit (C4): 5 networks x 10 classes,
    # network effects and within-network relation both normal, so the pooled law is bivariate normal
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
    from memrnn.book import read_verdicts, record_verdict, stale_reason

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    verdict = claims.c6_speed_penalty_helps(_c6(0.2), SCOPE)
    record_verdict(tmp_path, verdict, code_sha256="abc", parameters={"preset": "smoke"})
    record_verdict(tmp_path, "C1", "partly reproduced", "old style", "cpu", 30)
    c1, c6 = read_verdicts(tmp_path)
    assert c6["verdict"] == "reproduced" and c6["scope"]["archs"] == ["gru", "lstm"] and c6["rule"] == verdict.rule
    assert c6["preset"] == "smoke" and c6["networks"] == 10
    assert c6["device"] == f"CPU ({os.cpu_count()} cores)"
    assert stale_reason(c6, "abc", {"preset": "smoke"}) is None
    assert stale_reason(c6, "abd", {"preset": "smoke"}) == "recorded by other chapter code"
    assert stale_reason(c6, "abc", {"preset": "cpu"}) == "recorded with other parameters"
    assert stale_reason(c1, "abc", {"preset": "smoke"}) is not None
    with pytest.raises(ValueError):
        record_verdict(tmp_path, "C2", "sort of", "", "cpu", 1)


def test_scorecard_marks_a_verdict_its_chapter_did_not_produce(tmp_path, monkeypatch):
    """A verdict is stale when its chapter's committed notebook carries another code hash or preset."""
    import nbformat

    from memrnn.book import record_verdict, stale_verdicts

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
