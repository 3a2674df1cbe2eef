"""The paper's six claims as verdict rules fixed before the data: one function per claim.

Each function takes measured results as plain arrays and dicts (never run directories), applies the
rule written in its docstring under "Rule:", and returns a :class:`Verdict`. The rule is part of
the verdict (``Verdict.rule``), so a chapter prints it before anything runs (:func:`rule_markdown`)
and the verdict after (:func:`verdict_markdown`); no verdict logic lives in a notebook. Every rule
can return "not reproduced" (tests/test_claims.py feeds results where each claim is false).

Wiring, claim by claim (arrays are over networks unless said otherwise; ``scope`` is a
:class:`Scope` filled in by the chapter):

- ``c1_equal_trained_accuracy({(dataset, arch, protocol): trained-delay accuracy per network}, scope)``
- ``c2_protocols_differ({(dataset, arch, protocol): long-delay accuracy per network}, scope)``
- ``c3_slow_point_per_memory({search method: {"speed", "speed_at_centroid", "decoded": (N, K),
  "points": N arrays (K, S), "spread": (N, K)}}, scope)`` with N networks, K classes; ``spread`` is the
  RMS distance of a class's trial states to its centroid.
- ``c4_speed_predicts_memory(memrnn.stats.speed_memory_rows(...), scope)``
- ``c5_formation_explains(appears, introduced, appearance_fraction, long_accuracy, scope)``:
  ``appears`` and ``introduced`` are (N, K) steps for the ``vocu`` networks (``appears_at_unread``
  from memrnn.formation, NaN where a point was never traced; the step each class entered the
  curriculum); ``appearance_fraction`` and ``long_accuracy`` are {(arch, protocol): per network}.
- ``c6_speed_penalty_helps({(arch, parent protocol): {"long_slowpoints", "long_control",
  "trained_slowpoints", "trained_control": per seed, paired}}, scope)``

Intervals are 95% and come from :mod:`memrnn.stats` (t-intervals for means and paired differences,
Welch for two samples, a network jackknife for correlations), whose coverage at five networks the
tests check.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from .book import VERDICTS
from .stats import correlate, mean_ci, spearman_ci, welch_ci


# The protocols the paper trained. ``none`` is defined in the reference code but was never run by the
# paper: chapters show it beside the paper's protocols, and the verdicts judge the paper's claims on
# the paper's protocols only.
PAPER_PROTOCOLS = ("decu", "vocu")


@dataclass(frozen=True)
class Scope:
    """What a verdict was measured on: it can speak for no more than this."""
    preset: str
    datasets: tuple[str, ...]
    archs: tuple[str, ...]
    units: int
    steps: int
    model_form: str
    networks: int
    search: str = ""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class Verdict:
    claim: str
    verdict: str
    statistic: str
    rule: str
    details: dict
    scope: Scope

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} must be one of {VERDICTS}")

    def to_dict(self) -> dict:
        return {"claim": self.claim, "verdict": self.verdict, "statistic": self.statistic, "rule": self.rule,
                "details": self.details, "scope": self.scope.to_dict()}


def _rule(fn) -> str:
    doc = inspect.getdoc(fn)
    text = " ".join(doc[doc.index("Rule:") + len("Rule:"):].split())
    return text[0].upper() + text[1:]


def _worst(levels) -> str:
    return max(levels, key=VERDICTS.index) if levels else "not reproduced"


def _all_or_some(levels) -> str:
    """Reproduced if every group is; partly if any group is at least partly; otherwise not."""
    if levels and all(level == "reproduced" for level in levels):
        return "reproduced"
    return "partly reproduced" if any(level != "not reproduced" for level in levels) else "not reproduced"


def _key(key) -> str:
    return "/".join(key)


def _f(x, digits=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:+.{digits}f}"


def c1_equal_trained_accuracy(accuracy: dict, scope: Scope, margin: float = 0.03, floor: float = 0.90,
                              loose_margin: float = 0.10, loose_floor: float = 0.80) -> Verdict:
    """C1: protocols, datasets and architectures solve the trained delays equally well.

    Rule: within each dataset, for every pair of conditions (architecture, protocol) the 95% Welch
    interval of the difference of mean trained-delay accuracy (one value per network) lies inside
    ±0.03 (an equivalence test: two one-sided tests at 2.5%), and every condition mean is at least
    0.90: reproduced. If every mean is at least 0.80 and every pairwise interval lies inside ±0.10:
    partly reproduced. Otherwise, or with fewer than two conditions in every dataset: not reproduced.
    A wide interval (large spread between networks) fails equivalence just as a large difference does.
    """
    datasets = sorted({k[0] for k in accuracy})
    pairs, means = [], {_key(k): float(np.mean(v)) for k, v in accuracy.items()}
    for dataset in datasets:
        keys = sorted(k for k in accuracy if k[0] == dataset)
        for a, b in combinations(keys, 2):
            diff, low, high = welch_ci(accuracy[a], accuracy[b])
            pairs.append({"a": _key(a), "b": _key(b), "diff": diff, "ci95": [low, high],
                          "bound": max(abs(low), abs(high))})
    lowest = min(means.values())
    widest = max((p["bound"] for p in pairs), default=float("nan"))
    if not pairs:
        verdict = "not reproduced"
    elif lowest >= floor and widest <= margin:
        verdict = "reproduced"
    elif lowest >= loose_floor and widest <= loose_margin:
        verdict = "partly reproduced"
    else:
        verdict = "not reproduced"
    statistic = (f"lowest condition mean {lowest:.3f}; every pairwise difference within ±{widest:.3f} "
                 f"(95% CI bound, {len(pairs)} pairs in {len(datasets)} dataset{'s' * (len(datasets) > 1)})")
    return Verdict("C1", verdict, statistic, _rule(c1_equal_trained_accuracy),
                   {"means": means, "pairs": pairs, "lowest_mean": lowest, "widest_ci_bound": widest}, scope)


def c2_protocols_differ(long_accuracy: dict, scope: Scope, p_strong: float = 0.01, gap: float = 0.10) -> Verdict:
    """C2: protocols differ a lot in extrapolation to long delays.

    Rule: within each (dataset, architecture), never pooled over architectures, long-delay accuracy
    (one value per network) is compared across protocols with a Kruskal–Wallis test (effect size
    ε² = H / (n − 1)), and the best minus the worst protocol mean gets a 95% Welch interval. If in
    every (dataset, architecture) p < 0.01 and that interval's lower end is at least 0.10:
    reproduced. If in at least one p < 0.05 and the interval lies above 0: partly reproduced.
    Otherwise not reproduced. A (dataset, architecture) with fewer than two protocols fails. The
    statistic names the protocol that keeps memories longest in each architecture.
    """
    groups = {}
    for (dataset, arch, protocol), values in long_accuracy.items():
        groups.setdefault((dataset, arch), {})[protocol] = np.asarray(values, dtype=float)
    details, levels, parts = {}, [], []
    for key in sorted(groups):
        by_protocol = groups[key]
        if len(by_protocol) < 2:
            levels.append("not reproduced")
            continue
        values = list(by_protocol.values())
        pooled = np.concatenate(values)
        h, p = stats.kruskal(*values) if np.ptp(pooled) > 0 else (0.0, 1.0)
        means = {k: float(v.mean()) for k, v in by_protocol.items()}
        best, worst = max(means, key=means.get), min(means, key=means.get)
        diff, low, high = welch_ci(by_protocol[best], by_protocol[worst])
        strong, some = p < p_strong and low >= gap, p < 0.05 and low > 0
        levels.append("reproduced" if strong else "partly reproduced" if some else "not reproduced")
        details[_key(key)] = {"kruskal_h": float(h), "p": float(p), "epsilon2": float(h / (len(pooled) - 1)),
                              "means": means, "best": best, "worst": worst, "gap": diff, "gap_ci95": [low, high]}
        parts.append(f"{key[1].upper()} ({key[0]}): {best} longest, {worst} shortest, gap {diff:.2f} "
                     f"[{low:.2f}, {high:.2f}], Kruskal-Wallis p = {p:.1g}, ε² = {details[_key(key)]['epsilon2']:.2f}")
    return Verdict("C2", _all_or_some(levels), "; ".join(parts) or "fewer than two protocols per architecture",
                   _rule(c2_protocols_differ), details, scope)


def c3_slow_point_per_memory(methods: dict, scope: Scope, slower: float = 10.0, most: float = 0.9,
                             half: float = 0.5) -> Verdict:
    """C3: each memory is associated with a slow point.

    Rule: a (network, class) slow point counts when (i) the trigger at it reports its class, (ii) its
    speed is at most 1/10 of the speed at the class centroid it was searched from, and (iii) it is
    distinct: the nearest other class's point of the same network lies farther away than the RMS
    distance of the class's own trial states to their centroid. Per search method, at least 90% of
    points counting gives reproduced, at least 50% partly, fewer not reproduced. The verdict is the
    worst over the methods; it is reproduced only when at least two searches (ours and the
    reference's) were run and all give reproduced, and it says when the methods disagree.
    """
    details, levels, parts = {}, {}, []
    for method, m in methods.items():
        speed, centroid = np.asarray(m["speed"], float), np.asarray(m["speed_at_centroid"], float)
        decoded, spread = np.asarray(m["decoded"]), np.asarray(m["spread"], float)
        classes = np.arange(speed.shape[1])
        # per network: its points live in its own state space (GRU and LSTM sizes differ)
        gaps = np.stack([np.linalg.norm(np.asarray(p, float)[:, None] - np.asarray(p, float)[None], axis=-1)
                         for p in m["points"]])
        gaps[:, classes, classes] = np.inf
        own, slow, distinct = decoded == classes, speed <= centroid / slower, gaps.min(-1) > spread
        counts = own & slow & distinct
        fraction = float(counts.mean())
        levels[method] = "reproduced" if fraction >= most else "partly reproduced" if fraction >= half \
            else "not reproduced"
        details[method] = {"fraction": fraction, "own_class": float(own.mean()), "slower": float(slow.mean()),
                           "distinct": float(distinct.mean()), "points": int(counts.size),
                           "median_speed_ratio": float(np.median(speed / centroid))}
        parts.append(f"{method}: {fraction:.0%} of {counts.size} points count (own class {own.mean():.0%}, "
                     f"{slower:g}x slower {slow.mean():.0%}, distinct {distinct.mean():.0%})")
    verdict = _worst(list(levels.values()))
    agree = len(set(levels.values())) <= 1
    if verdict == "reproduced" and len(levels) < 2:
        verdict = "partly reproduced"
        parts.append("only one search method: capped at partly")
    if not agree:
        parts.append("the search methods disagree (" + ", ".join(f"{k}: {v}" for k, v in levels.items()) + ")")
    details["methods_agree"] = agree
    return Verdict("C3", verdict, "; ".join(parts), _rule(c3_slow_point_per_memory), details, scope)


def c4_speed_predicts_memory(rows: list[dict], scope: Scope, strength: float = -0.3) -> Verdict:
    """C4: slow-point speed predicts extrapolation.

    Rule: within each (dataset, architecture), over all its protocols, the Spearman correlation of
    log10 slow-point speed with the class's long-delay accuracy, one observation per (network,
    class), with a 95% interval that treats networks as the unit (leave-one-network-out jackknife).
    If in every (dataset, architecture) r ≤ −0.3 and the interval lies below 0: reproduced. If the
    interval lies below 0 in at least one: partly reproduced. Otherwise not reproduced. The
    correlation pooled over architectures is reported but decides nothing: GRU and LSTM speeds are
    measured in different state spaces.
    """
    groups = sorted({(r["dataset"], r["arch"]) for r in rows})
    details, levels, parts = {"pooled": correlate(rows)["spearman"]}, [], []
    for key in groups:
        result = correlate([r for r in rows if (r["dataset"], r["arch"]) == key])
        s, high = result["spearman"], result["spearman"]["ci95"][1]
        below = high is not None and high < 0
        levels.append("reproduced" if below and s["r"] <= strength else "partly reproduced" if below
                      else "not reproduced")
        details[_key(key)] = {**s, "networks": result["networks"], "n": result["n"]}
        parts.append(f"{key[1].upper()} ({key[0]}): Spearman r = {_f(s['r'])} [{_f(s['ci95'][0])}, {_f(high)}] "
                     f"over {result['networks']} networks")
    return Verdict("C4", _all_or_some(levels), "; ".join(parts), _rule(c4_speed_predicts_memory), details, scope)


def c5_formation_explains(appears, introduced, appearance_fraction: dict, long_accuracy: dict, scope: Scope,
                          after: float = 0.8, permutations: int = 2000, seed: int = 0) -> Verdict:
    """C5: tracking slow-point formation explains the protocol differences.

    Rule: (a) in vocu networks a class's slow point forms once its class is introduced. Appearance is
    located without the readout (first checkpoint from which the traced point stays slow, in the
    region and without a jump), since the readout of a class not yet introduced is masked. The
    statistic is the fraction of traced points appearing at or after their class's introduction;
    the null permutes the introduction steps among the classes of each network (2000 permutations).
    (a) holds if the fraction is at least 0.8 and the permutation p < 0.05. (b) The explanation,
    stated before running: within each architecture, networks whose points form earlier (median
    readout-free appearance over classes, as a fraction of training) keep memories longer. (b)
    holds in an architecture if the Spearman correlation of appearance fraction with long-delay
    accuracy over its networks (all protocols) has a 95% interval below 0 and the protocol with the
    earliest mean appearance has the best mean long-delay accuracy. Reproduced: (a) and (b) in every
    architecture; partly: one of them; not reproduced: neither.
    """
    appears, introduced = np.asarray(appears, float), np.asarray(introduced, float)
    traced = np.isfinite(appears)
    fraction = float((appears >= introduced)[traced].mean()) if traced.any() else float("nan")
    rng, null = np.random.default_rng(seed), []
    for _ in range(permutations if traced.any() else 0):
        shuffled = rng.permuted(introduced, axis=1)
        null.append((appears >= shuffled)[traced].mean())
    p = float((1 + np.sum(np.array(null) >= fraction)) / (1 + len(null))) if null else float("nan")
    check_a = bool(traced.any() and fraction >= after and p < 0.05)
    details = {"a": {"fraction_after": fraction, "p": p, "traced": int(traced.sum()), "points": int(appears.size),
                     "holds": check_a}, "b": {}}
    for arch in sorted({k[0] for k in appearance_fraction}):
        keys = sorted(k for k in appearance_fraction if k[0] == arch)
        x = np.concatenate([np.asarray(appearance_fraction[k], float) for k in keys])
        y = np.concatenate([np.asarray(long_accuracy[k], float) for k in keys])
        corr = spearman_ci(x, y)
        earliest = min(keys, key=lambda k: np.mean(appearance_fraction[k]))[1]
        best = max(keys, key=lambda k: np.mean(long_accuracy[k]))[1]
        holds = corr["ci95"][1] is not None and corr["ci95"][1] < 0 and earliest == best
        details["b"][arch] = {**corr, "earliest": earliest, "best": best, "holds": bool(holds)}
    check_b = bool(details["b"]) and all(d["holds"] for d in details["b"].values())
    verdict = ("reproduced" if check_a and check_b else "partly reproduced" if check_a or check_b
               else "not reproduced")
    b_text = "; ".join(f"{arch.upper()} r = {_f(d['r'])} [{_f(d['ci95'][0])}, {_f(d['ci95'][1])}], earliest "
                       f"{d['earliest']}, best {d['best']}" for arch, d in details["b"].items())
    statistic = (f"(a) {fraction:.0%} of {int(traced.sum())} traced vocu points appear at or after their class's "
                 f"introduction, permutation p = {p:.2g}: {check_a}; (b) earlier formation, longer memory: "
                 f"{b_text or 'n/a'}: {check_b}")
    return Verdict("C5", verdict, statistic, _rule(c5_formation_explains), details, scope)


def c6_speed_penalty_helps(pairs: dict, scope: Scope, dramatic: float = 0.10, max_loss: float = 0.02,
                           min_seeds: int = 10) -> Verdict:
    """C6: regularising speed at the memories dramatically improves memory robustness.

    Rule: per (architecture, parent protocol), the paired per-seed difference slowpoints minus control
    in long-delay accuracy and in trained-delay accuracy, each with a 95% t-interval. "Dramatically"
    is a long-delay gain of at least 0.10 with its interval above 0, and trained-delay accuracy not
    worse by more than 0.02 (the interval's lower end at least −0.02). Reproduced: dramatic in every
    (architecture, parent), with at least 10 seeds each and both decu and vocu parents. Partly: a
    long-delay gain with its interval above 0 and a mean trained-delay change of at least −0.02 in at
    least one (architecture, parent), or dramatic everywhere with fewer seeds or one parent protocol.
    Otherwise not reproduced.
    """
    details, dramatic_all, gains, parts = {}, [], [], []
    for key in sorted(pairs):
        d = pairs[key]
        long = np.asarray(d["long_slowpoints"], float) - np.asarray(d["long_control"], float)
        trained = np.asarray(d["trained_slowpoints"], float) - np.asarray(d["trained_control"], float)
        (lm, ll, lh), (tm, tl, th) = mean_ci(long), mean_ci(trained)
        is_dramatic = bool(lm >= dramatic and ll > 0 and tl >= -max_loss)
        is_gain = bool(ll > 0 and tm >= -max_loss)
        dramatic_all.append(is_dramatic)
        gains.append(is_gain)
        details[_key(key)] = {"seeds": len(long), "long_gain": lm, "long_ci95": [ll, lh], "trained_change": tm,
                              "trained_ci95": [tl, th], "dramatic": is_dramatic, "gain": is_gain}
        parts.append(f"{key[0].upper()} ({key[1]} parents, {len(long)} seeds): long-delay {lm:+.3f} "
                     f"[{ll:+.3f}, {lh:+.3f}], trained-delay {tm:+.3f} [{tl:+.3f}, {th:+.3f}]")
    enough = all(v["seeds"] >= min_seeds for v in details.values()) and {"decu", "vocu"} <= {k[1] for k in pairs}
    if dramatic_all and all(dramatic_all) and enough:
        verdict = "reproduced"
    elif any(gains):
        verdict = "partly reproduced"
    else:
        verdict = "not reproduced"
    if dramatic_all and all(dramatic_all) and not enough:
        parts.append(f"fewer than {min_seeds} seeds or not both decu and vocu parents: capped at partly")
    return Verdict("C6", verdict, "; ".join(parts), _rule(c6_speed_penalty_helps), details, scope)


RULES = {"C1": c1_equal_trained_accuracy, "C2": c2_protocols_differ, "C3": c3_slow_point_per_memory,
         "C4": c4_speed_predicts_memory, "C5": c5_formation_explains, "C6": c6_speed_penalty_helps}


def rule_markdown(claim: str) -> str:
    """The rule of ``claim`` as a Markdown paragraph, for a chapter to show before it runs."""
    return f"**Verdict rule ({claim}).** {_rule(RULES[claim])}"


def scope_markdown(scope: Scope) -> str:
    s = scope
    text = (f"preset `{s.preset}`; datasets {', '.join(s.datasets)}; architectures "
            f"{', '.join(a.upper() for a in s.archs)}; {s.units} units; {s.steps} training steps; {s.model_form}; "
            f"{s.networks} networks")
    return text + (f"; search {s.search}" if s.search else "")


def verdict_markdown(verdict: Verdict) -> str:
    """A verdict, its statistic and its scope as Markdown."""
    return (f"**{verdict.claim}: {verdict.verdict}.** {verdict.statistic}\n\n"
            f"*Scope:* {scope_markdown(verdict.scope)}.")
