"""The paper's six claims as verdict rules fixed before the data: one function per claim.

Each function takes measured results as plain arrays and dicts (never run directories), applies the
rule written in its docstring under "Rule:", and returns a :class:`Verdict`. The rule is part of
the verdict, so a chapter prints it before anything runs (:func:`rule_text`) and the verdict
after (:func:`memrnn.display.verdict_box`); no verdict logic lives in a notebook.

A verdict is one of four outcomes, each with its reason:

- **reproduced**: the effect the rule names is established in every group (each group's 95% interval
  clears it: an intersection-union test, so no multiplicity correction is needed);
- **partly reproduced**: an effect in the claim's direction is established in at least one group,
  Holm-corrected over the groups (family-wise error 5%), without the named effect everywhere;
- **not reproduced**: the evidence contradicts the claim: an interval excludes the named effect;
- **inconclusive**: a premise is unmet (e.g. a condition that does not solve the trained delays, too
  few networks), or the intervals include both no effect and the named effect (too little power).

Every verdict lists its premises and, per group, the smallest effect its design detects with 80%
power (:func:`memrnn.stats.detectable`), beside the effect the rule names. Intervals are
distribution-free (:func:`memrnn.stats.median_ci`, :func:`memrnn.stats.shift_ci`) or, for
correlations, a network jackknife on Fisher's z; tests/test_claims.py measures their coverage and
every decision's false-positive rate at its threshold by simulation.

Wiring, claim by claim (arrays are over networks unless said otherwise; ``trained`` is
{(dataset, arch, protocol): trained-delay accuracy per network}, the premise of C2-C6; ``scope`` is
a :class:`Scope` filled in by the chapter):

- ``c1_equal_trained_accuracy(trained, scope)``
- ``c2_protocols_differ({(dataset, arch, protocol): long-delay accuracy per network}, trained, scope)``
- ``c3_slow_point_per_memory({search method: {"speed", "speed_visited", "decoded", "in_region",
  "moved", "spread": (N, K), "points": N arrays (K, S)}}, trained, scope)``, N networks, K classes
  (:func:`memrnn.evidence.slow_points`)
- ``c4_speed_predicts_memory(memrnn.stats.speed_memory_rows(...), trained, scope)``
- ``c5_formation_explains(appears, introduced, long_accuracy, trained, scope)``
  (:func:`memrnn.evidence.formation`)
- ``c6_speed_penalty_helps({(arch, parent protocol): {"parent", "control", "slowpoints": {"long",
  "trained": per seed, paired}, "specificity": {"slowpoints", "centermass": long per seed}}}, scope)``
  (:func:`memrnn.evidence.finetune_pairs`)
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats

from .book import VERDICTS
from .stats import (clustered_proportion, correlate, detectable, median_ci, median_p, random_effects, shift_ci,
                    spearman_ci)

# The protocols the paper trained. ``none`` is defined in the reference code but was never run by the
# paper: chapters show it beside the paper's protocols, and the verdicts judge the paper's claims on
# the paper's protocols only.
PAPER_PROTOCOLS = ("decu", "vocu")
SOLVED = 0.80      # premise: a condition solves the trained delays when its median network's lower bound is above this
MIN_NETWORKS = 5   # premise: the fewest networks per condition for which a distribution-free interval exists
ALPHA = 0.05       # family-wise error of "partly reproduced" (Holm over groups)
DRAMATIC = 0.10    # C6: the long-delay gain the rule calls "dramatic"
Z95 = stats.norm.ppf(0.975)


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
    search_iterations: int = 0   # the reference search's iterations, where it ran
    finetune_steps: int = 0      # C6: fine-tuning steps
    lam: float = 0.0             # C6: the speed penalty's strength

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
    reason: str = ""
    premises: list = field(default_factory=list)   # [{"premise", "met", "failing"}]
    detectable: str = ""                           # smallest effect detectable at this n, per group

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} must be one of {VERDICTS}")

    def to_dict(self) -> dict:
        return {"claim": self.claim, "verdict": self.verdict, "statistic": self.statistic, "rule": self.rule,
                "reason": self.reason, "premises": self.premises, "detectable": self.detectable,
                "details": self.details, "scope": self.scope.to_dict()}


@dataclass
class Test:
    """One group's evidence on the claim's scale (positive: the claim's direction)."""
    group: str
    estimate: float
    low: float
    high: float
    p: float                  # one-sided p-value against ``weak``
    effect: float             # the effect the rule names
    weak: float = 0.0         # beyond this: "an effect"
    detectable: float = float("nan")
    blocked: str = ""         # why this group cannot count for the claim
    contradicted: str = ""    # why this group contradicts the claim whatever its interval

    def __post_init__(self):
        if np.isnan(self.detectable):
            self.detectable = self.weak + detectable(self.low, self.high)

    def to_dict(self) -> dict:
        return asdict(self)


def _rule(fn) -> str:
    doc = inspect.getdoc(fn)
    text = " ".join(doc[doc.index("Rule:") + len("Rule:"):].split())
    return text[0].upper() + text[1:]


def _key(key) -> str:
    return "/".join(key)


def _f(x, digits=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:+.{digits}f}"


def _premise(text: str, failing) -> dict:
    failing = [_key(k) if isinstance(k, tuple) else str(k) for k in failing]
    return {"premise": text, "met": not failing, "failing": failing}


def _solves(trained: dict) -> list[dict]:
    """C2-C6's premises: enough networks, and every paper condition solves the trained delays."""
    few = [k for k, v in trained.items() if len(v) < MIN_NETWORKS]
    unsolved = [k for k, v in trained.items() if not median_ci(v)[1] >= SOLVED]
    return [_premise(f"at least {MIN_NETWORKS} networks per condition", few),
            _premise(f"every paper condition solves the trained delays (median network's 95% lower bound "
                     f"at least {SOLVED:.2f})", unsolved)]


def holm(p, alpha: float = ALPHA) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects at family-wise error ``alpha``."""
    order, rejected = np.argsort(p), [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        rejected[i] = True
    return rejected


def _decide(tests: list[Test], premises: list[dict]) -> tuple[str, str]:
    """The outcome and its reason (see the module docstring)."""
    unmet = [p for p in premises if not p["met"]]
    if unmet:
        return "inconclusive", "premise unmet: " + "; ".join(
            f"{p['premise']} ({', '.join(p['failing'])})" if p["failing"] else p["premise"] for p in unmet)
    if not tests:
        return "inconclusive", "nothing to test"
    effect = [t for t, h in zip(tests, holm([t.p for t in tests])) if h and not t.blocked]
    if all(t.low >= t.effect and not t.blocked for t in tests):
        return "reproduced", "the named effect is established in every group (" + ", ".join(
            f"{t.group}: lower bound {t.low:.2f} ≥ {t.effect:g}" for t in tests) + ")"
    if effect:
        short = [t for t in tests if t.low < t.effect or t.blocked]
        return "partly reproduced", (
            f"an effect is established in {', '.join(t.group for t in effect)} (Holm, family-wise 5%), but not the "
            f"named effect in {', '.join(t.group for t in short)}"
            + "".join(f"; {t.group}: {t.blocked}" for t in short if t.blocked))
    against = [t for t in tests if t.high < t.effect or t.contradicted]
    if against:
        return "not reproduced", "the evidence excludes the named effect in " + ", ".join(
            f"{t.group} ({t.contradicted or f'upper bound {t.high:.2f} < {t.effect:g}'})" for t in against)
    weak = [t for t in tests if t.detectable > t.effect]
    return "inconclusive", ("every interval includes both no effect and the named effect" + (
        "; too little power: the smallest detectable effect exceeds the named one in " + ", ".join(
            f"{t.group} ({t.detectable:.2f} > {t.effect:g})" for t in weak) if weak else ""))


def _power(tests: list[Test]) -> str:
    return "; ".join(f"{t.group}: {t.detectable:.2f} (named {t.effect:g})" for t in tests) or "n/a (nothing tested)"


def _verdict(claim, fn, tests, premises, statistic, details, scope, cap: str = "") -> Verdict:
    verdict, reason = _decide(tests, premises)
    if cap and verdict == "reproduced":
        verdict, reason = "partly reproduced", f"{reason}; {cap}: capped at partly"
    details = {**details, "tests": [t.to_dict() for t in tests]}
    return Verdict(claim, verdict, statistic, _rule(fn), details, scope, reason, premises, _power(tests))


def _interval(values) -> str:
    m, low, high = values
    return f"{m:.3f} [{low:.3f}, {high:.3f}]"


def c1_equal_trained_accuracy(accuracy: dict, scope: Scope, margin: float = 0.03, floor: float = 0.90,
                              loose_margin: float = 0.10) -> Verdict:
    """C1: protocols, datasets and architectures solve the trained delays equally well.

    Rule: within each dataset, every condition (architecture, protocol) gets the median network's
    trained-delay accuracy with its order-statistic interval, and every pair of conditions the
    Hodges-Lehmann shift with its exact Mann-Whitney interval. Reproduced: every condition's lower
    bound is at least 0.90 and every pair's interval lies inside ±0.03 (an equivalence test).
    Partly: every lower bound at least 0.90 and every pair inside ±0.10. Not reproduced: a
    condition's upper bound below 0.90 or a pair's interval wholly outside ±0.10. Otherwise
    inconclusive. Premises: at least two conditions in every dataset, at least 5 networks each.
    """
    datasets = sorted({k[0] for k in accuracy})
    levels = {_key(k): median_ci(v) for k, v in accuracy.items()}
    pairs = []
    for dataset in datasets:
        for a, b in combinations(sorted(k for k in accuracy if k[0] == dataset), 2):
            diff, low, high, _ = shift_ci(accuracy[a], accuracy[b])
            pairs.append({"a": _key(a), "b": _key(b), "diff": diff, "ci95": [low, high], "bound": max(-low, high),
                          "detectable": detectable(low, high, power=0.9)})
    premises = [_premise("at least two conditions in every dataset",
                         [d for d in datasets if sum(k[0] == d for k in accuracy) < 2]),
                _premise(f"at least {MIN_NETWORKS} networks per condition",
                         [k for k, v in accuracy.items() if len(v) < MIN_NETWORKS])]
    lowest = min(v[1] for v in levels.values())
    highest = min(v[2] for v in levels.values())
    widest = max((p["bound"] for p in pairs), default=float("nan"))
    apart = [p for p in pairs if p["ci95"][0] > loose_margin or p["ci95"][1] < -loose_margin]
    if not all(p["met"] for p in premises):
        verdict, reason = _decide([], premises)
    elif lowest >= floor and widest <= margin:
        verdict, reason = "reproduced", f"every lower bound ≥ {floor}, every pair within ±{margin}"
    elif lowest >= floor and widest <= loose_margin:
        verdict, reason = "partly reproduced", f"every lower bound ≥ {floor}; pairs within ±{loose_margin}, not ±{margin}"
    elif highest < floor or apart:
        verdict = "not reproduced"
        reason = "; ".join([f"a condition's upper bound {highest:.3f} < {floor}"] * (highest < floor)
                           + [f"{p['a']} vs {p['b']} differ beyond ±{loose_margin}" for p in apart])
    else:
        verdict, reason = "inconclusive", ("the intervals include both equal and unequal accuracy (lowest lower "
                                           f"bound {lowest:.3f}, widest pair bound ±{widest:.3f})")
    statistic = (f"lowest condition's lower bound {lowest:.3f} (median network); every pairwise shift within "
                 f"±{widest:.3f} (95% bound, {len(pairs)} pairs in {len(datasets)} dataset{'s' * (len(datasets) > 1)})")
    power = max((p["detectable"] for p in pairs), default=float("nan"))
    details = {"levels": {k: list(v) for k, v in levels.items()}, "pairs": pairs, "lowest_bound": lowest,
               "widest_ci_bound": widest}
    return Verdict("C1", verdict, statistic, _rule(c1_equal_trained_accuracy), details, scope, reason, premises,
                   f"smallest margin within which equality can be shown (90% power): ±{power:.3f} (rule: ±{margin})")


def c2_protocols_differ(long_accuracy: dict, trained: dict, scope: Scope, gap: float = 0.10) -> Verdict:
    """C2: protocols differ a lot in extrapolation to long delays.

    Rule: within each (dataset, architecture), never pooled over architectures, the best minus the
    worst paper protocol in long-delay accuracy (one value per network): the Hodges-Lehmann shift
    with its exact Mann-Whitney 95% interval and two-sided p-value. Reproduced: the lower bound is at
    least 0.10 in every (dataset, architecture). Partly: a difference (Holm over the architectures)
    somewhere. Not reproduced: an upper bound below 0.10. Otherwise inconclusive. Premises: at least
    two protocols per (dataset, architecture); every condition solves the trained delays with at
    least 5 networks (an undertrained condition forgets for another reason).
    """
    groups = {}
    for (dataset, arch, protocol), values in long_accuracy.items():
        groups.setdefault((dataset, arch), {})[protocol] = np.asarray(values, dtype=float)
    premises = [_premise("at least two protocols per (dataset, architecture)",
                         [k for k, v in groups.items() if len(v) < 2]), *_solves(trained)]
    details, tests, parts = {}, [], []
    for key in sorted(groups):
        by_protocol = groups[key]
        if len(by_protocol) < 2:
            continue
        medians = {k: float(np.median(v)) for k, v in by_protocol.items()}
        best, worst = max(medians, key=medians.get), min(medians, key=medians.get)
        diff, low, high, p = shift_ci(by_protocol[best], by_protocol[worst])
        # best and worst are chosen by the data: the two-sided p is the honest one
        tests.append(Test(f"{key[1].upper()} ({key[0]})", diff, low, high, p, gap))
        details[_key(key)] = {"medians": medians, "best": best, "worst": worst, "gap": diff, "gap_ci95": [low, high],
                              "p": p}
        order = f"{best} longest, {worst} shortest" if medians[best] > medians[worst] else "protocols tied"
        parts.append(f"{key[1].upper()} ({key[0]}): {order}, gap {diff:.2f} "
                     f"[{low:.2f}, {high:.2f}], Mann-Whitney p = {p:.2g}")
    return _verdict("C2", c2_protocols_differ, tests, premises,
                    "; ".join(parts) or "fewer than two protocols per architecture", details, scope)


def c3_slow_point_per_memory(methods: dict, trained: dict, scope: Scope, slower: float = 10.0, most: float = 0.9,
                             half: float = 0.5) -> Verdict:
    """C3: each memory is associated with a slow point.

    Rule: a (network, class) slow point counts when (0) it is a state the network can reach: h in
    the open (−1, 1)^H (GRU and tanh RNN; LSTM: h in (−1, 1), c unbounded, speed measured in
    (h, tanh c)), so a point left on the boundary of the reference search's clip box [−1, 1] does not
    count; (i) the trigger at it reports its class; (ii) its speed is at most 1/10 of the median speed
    of the states the network visits during the delay after images of that class; (iii) it is
    distinct: the nearest other class's point of the same network lies farther away than the RMS
    distance of the class's own trial states to their centroid. Per search method, the share of
    points that count gets a 95% Clopper-Pearson interval on the effective number of points (Kish's
    design effect: points of one network are clustered). Reproduced: the lower bound is at least 0.9
    under at least two searches (ours and the reference's). Partly: a share above 0.5 (Holm over the
    searches). Not reproduced: an upper bound below 0.9. Otherwise inconclusive. Premises: every
    condition solves the trained delays with at least 5 networks. Reported, deciding nothing: each
    search's share of points on the clip boundary and how far points moved from their start.
    """
    details, tests, parts = {}, [], []
    for method, m in methods.items():
        speed, visited = np.asarray(m["speed"], float), np.asarray(m["speed_visited"], float)
        decoded, spread = np.asarray(m["decoded"]), np.asarray(m["spread"], float)
        inside, moved = np.asarray(m["in_region"], bool), np.asarray(m["moved"], float)
        classes = np.arange(speed.shape[1])
        # per network: its points live in its own state space (GRU and LSTM sizes differ)
        gaps = np.stack([np.linalg.norm(np.asarray(p, float)[:, None] - np.asarray(p, float)[None], axis=-1)
                         for p in m["points"]])
        gaps[:, classes, classes] = np.inf
        own, slow, distinct = decoded == classes, speed <= visited / slower, gaps.min(-1) > spread
        counts = inside & own & slow & distinct
        share = clustered_proportion(counts, above=half)
        tests.append(Test(method, share["share"], *share["ci95"], share["p"], most, half))
        details[method] = {"fraction": share["share"], "ci95": share["ci95"], "effective_n": share["effective_n"],
                           "in_region": float(inside.mean()), "on_boundary": float(1 - inside.mean()),
                           "own_class": float(own.mean()), "slower": float(slow.mean()),
                           "distinct": float(distinct.mean()), "points": int(counts.size),
                           "median_speed_ratio": float(np.median(speed / visited)),
                           # a class with one decoded trial has no spread to measure the move in
                           "median_moved": float(np.median(moved[spread > 0] / spread[spread > 0])),
                           "unmoved": float((moved < 0.01 * spread).mean())}
        parts.append(f"{method}: {share['share']:.0%} [{share['ci95'][0]:.0%}, {share['ci95'][1]:.0%}] of "
                     f"{counts.size} points count (reachable {inside.mean():.0%}, own class {own.mean():.0%}, "
                     f"{slower:g}x slower than visited states {slow.mean():.0%}, distinct {distinct.mean():.0%}); "
                     f"{1 - inside.mean():.0%} end on the clip boundary; median distance moved from the start "
                     f"{details[method]['median_moved']:.2f} class spreads")
    cap = "only one search method" if len(methods) < 2 else ""
    return _verdict("C3", c3_slow_point_per_memory, tests, _solves(trained), "; ".join(parts), details, scope, cap)


def _condition_z(rows: list[dict]) -> tuple[float, float] | None:
    """Fisher z of the Spearman correlation in one condition and its standard error, read off the
    network jackknife's t-interval (widened to a normal-equivalent error)."""
    low, high = correlate(rows)["spearman"]["ci95"]
    if low is None or abs(low) >= 1 or abs(high) >= 1:
        return None
    zl, zh = np.arctanh(low), np.arctanh(high)
    return float((zl + zh) / 2), float((zh - zl) / 2 / Z95)


def c4_speed_predicts_memory(rows: list[dict], trained: dict, scope: Scope, strength: float = -0.3) -> Verdict:
    """C4: slow-point speed predicts extrapolation.

    Rule: within each (dataset, architecture, protocol) condition, the Spearman correlation of log10
    slow-point speed with the class's long-delay accuracy, one observation per (network, class),
    with a leave-one-network-out jackknife on Fisher's z; the conditions of a (dataset,
    architecture) are combined by a DerSimonian-Laird random-effects mean of their z, so an
    association that exists only between protocols counts for nothing. Reproduced: the combined 95%
    interval lies below −0.3 in every (dataset, architecture). Partly: below 0 in at least one (Holm
    over the architectures). Not reproduced: above −0.3 in one. Otherwise inconclusive. Premises:
    every condition solves the trained delays with at least 5 networks, and has a correlation
    interval. Reported, deciding nothing: the correlation pooled over the protocols of an
    architecture (within and between conditions mixed) and pooled over architectures.
    """
    conditions = sorted({(r["dataset"], r["arch"], r["protocol"]) for r in rows})
    per = {c: _condition_z([r for r in rows if (r["dataset"], r["arch"], r["protocol"]) == c]) for c in conditions}
    premises = [*_solves(trained), _premise("every condition has a correlation interval (varied speeds, 3+ networks)",
                                            [c for c, v in per.items() if v is None])]
    details, tests, parts = {"pooled": correlate(rows)["spearman"]}, [], []
    for key in sorted({c[:2] for c in conditions}):
        inside = [(c, v) for c, v in per.items() if c[:2] == key and v is not None]
        pooled = correlate([r for r in rows if (r["dataset"], r["arch"]) == key])["spearman"]
        details[_key(key)] = {"pooled_over_protocols": pooled,
                              "conditions": {c[2]: {"r": float(np.tanh(z)), "z": z, "se": se} for c, (z, se) in inside}}
        if not inside:
            continue
        combined = random_effects([z for _, (z, _) in inside], [se for _, (_, se) in inside])
        r, (zl, zh) = float(np.tanh(combined["z"])), combined["ci95"]
        low, high = float(np.tanh(zl)), float(np.tanh(zh))
        # on the claim's scale (-r); the detectable effect from the z interval
        tests.append(Test(f"{key[1].upper()} ({key[0]})", -r, -high, -low, float(stats.norm.cdf(combined["z"] / combined["se"])),
                          -strength, detectable=float(np.tanh(detectable(zl, zh)))))
        details[_key(key)].update(r=r, ci95=[low, high], tau2=combined["tau2"])
        parts.append(f"{key[1].upper()} ({key[0]}): within-condition Spearman r = {_f(r)} [{_f(low)}, {_f(high)}] "
                     f"over {len(inside)} conditions (random effects, τ² = {combined['tau2']:.2f}); pooled over "
                     f"protocols {_f(pooled['r'])}")
    return _verdict("C4", c4_speed_predicts_memory, tests, premises, "; ".join(parts), details, scope)


def _rank_test(x, y, group: str, effect: float, units=None) -> Test | None:
    """Spearman r of y with x as a Test on the claim's scale (positive effect), with its 95% interval:
    a jackknife over ``units`` when given, else Fisher z with the Bonett-Wright standard error."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    sign = np.sign(effect)
    r = float(stats.spearmanr(x, y).statistic)
    p = float(stats.spearmanr(x, y, alternative="greater" if sign > 0 else "less").pvalue)
    if units is not None:
        low, high = spearman_ci(x, y, units)["ci95"]
        if low is None:
            return None
        zl, zh = np.arctanh(np.clip([low, high], -1 + 1e-12, 1 - 1e-12))
    else:
        se = np.sqrt((1 + r ** 2 / 2) / (len(x) - 3))
        z = np.arctanh(np.clip(r, -0.999999, 0.999999))
        zl, zh = z - Z95 * se, z + Z95 * se
    low, high = sorted((sign * np.tanh(zl), sign * np.tanh(zh)))
    return Test(group, sign * r, float(low), float(high), p, abs(effect), detectable=float(np.tanh(detectable(zl, zh))))


def _nanmedian(values, axis: int) -> np.ndarray:
    """Median over what was measured (NaN: missing); NaN where nothing was."""
    values = np.asarray(values, float)
    some = np.isfinite(values).any(axis)
    out = np.full(some.shape, np.nan)
    out[some] = np.nanmedian(np.compress(some, values, axis=1 - axis), axis)
    return out


def c5_formation_explains(appears: dict, introduced: dict, long_accuracy: dict, trained: dict, scope: Scope,
                          follows: float = 0.5, strength: float = -0.3) -> Verdict:
    """C5: tracking slow-point formation explains the protocol differences.

    Rule: appearance is located without the readout (first checkpoint from which the traced point
    stays slow, in the region and without a jump), as a fraction of training; a point never traced
    is missing, not late. (a) In every architecture, a class's slow point forms once its class is
    introduced: a class's formation delay in vocu, measured against the same class in decu (median
    over networks, vocu minus decu, which removes everything a class brings whatever the protocol,
    such as its index, the order vocu introduces classes in), rises with the step vocu introduces it:
    Spearman r over classes with a Fisher-z 95% interval; the named effect is r ≥ 0.5. (b) In every
    architecture, networks whose points form earlier (median appearance over their traced classes)
    keep memories longer: Spearman r of appearance with long-delay accuracy over networks (all
    paper protocols), network-jackknife interval; the named effect is r ≤ −0.3. Reproduced: the
    named effects of (a) and (b) established in every architecture. Partly: an effect in the
    claim's direction in at least one of these tests (Holm). Not reproduced: an interval excludes
    its named effect. Otherwise inconclusive. Premises: every condition solves the trained delays
    with at least 5 networks; both protocols have traced points for at least 5 classes. Which
    protocol forms earlier is reported (a tie when the shift's interval includes 0), deciding nothing.
    """
    archs = sorted({k[0] for k in appears})
    tests, details, parts, sparse = [], {}, [], []
    for arch in archs:
        vocu, decu = appears.get((arch, "vocu")), appears.get((arch, "decu"))
        entry = details.setdefault(arch, {})
        if vocu is not None and decu is not None:
            delay = _nanmedian(vocu, 0) - _nanmedian(decu, 0)  # a class traced in no network: NaN
            keep = np.isfinite(delay) & np.isfinite(introduced[arch])
            if keep.sum() < 5:
                sparse.append(arch)
            entry["a"] = {"delay": delay.tolist(), "introduced": list(introduced[arch]), "classes": int(keep.sum())}
            test = _rank_test(np.asarray(introduced[arch])[keep], delay[keep], f"{arch.upper()} (a)", follows)
            if test is not None:
                tests.append(test)
                parts.append(f"{arch.upper()} (a): vocu-minus-decu formation delay vs introduction, r = "
                             f"{_f(test.estimate)} [{_f(test.low)}, {_f(test.high)}] over {int(keep.sum())} classes")
        else:
            sparse.append(arch)
        keys = sorted(k for k in appears if k[0] == arch)
        first = {k: _nanmedian(appears[k], 1) for k in keys}  # a network with nothing traced: NaN
        x = np.concatenate([first[k] for k in keys])
        y = np.concatenate([np.asarray(long_accuracy[k], float) for k in keys])
        units = np.arange(len(x))
        keep = np.isfinite(x)
        test = _rank_test(x[keep], y[keep], f"{arch.upper()} (b)", strength, units[keep])
        if test is not None:
            tests.append(test)
            parts.append(f"{arch.upper()} (b): appearance vs long-delay accuracy, r = {_f(-test.estimate)} "
                         f"[{_f(-test.high)}, {_f(-test.low)}] over {int(keep.sum())} networks")
        if len(keys) == 2:
            a, b = (first[k][np.isfinite(first[k])] for k in keys)
            if len(a) and len(b):
                shift, low, high, _ = shift_ci(a, b)
                earlier = "tie" if low <= 0 <= high else keys[0][1] if high < 0 else keys[1][1]
                entry["earlier"] = {"forms_earlier": earlier, "shift": shift, "ci95": [low, high]}
                parts.append(f"{arch.upper()}: earlier-forming protocol {earlier}")
    premises = [*_solves(trained), _premise("vocu and decu traced for at least 5 classes", sparse)]
    return _verdict("C5", c5_formation_explains, tests, premises, "; ".join(parts) or "nothing traced", details, scope)


def c6_speed_penalty_helps(runs: dict, scope: Scope, dramatic: float = DRAMATIC, max_loss: float = 0.02) -> Verdict:
    """C6: regularising speed at the memories dramatically improves memory robustness.

    Rule: per (architecture, parent protocol), per seed, the parent, its control fine-tune (λ = 0)
    and its slowpoints fine-tune side by side. The gain is the median over seeds of slowpoints
    minus control and of slowpoints minus parent in long-delay accuracy, each with its
    order-statistic 95% interval; the penalised network must beat both (the smaller bound counts),
    so a control damaged by fine-tuning cannot make an unchanged network look better. "Dramatic" is
    a gain of at least 0.10, and trained-delay accuracy (slowpoints minus control) not worse by more
    than 0.02. Reproduced: the lower bound of the gain is at least 0.10 and that of the trained-delay
    change at least −0.02, in every (architecture, parent). Partly: a gain (Holm over the groups)
    with the trained-delay change not shown worse than −0.02. Not reproduced: the gain's upper bound
    below 0.10, or the trained-delay change's upper bound below −0.02 (memory bought with the task).
    Otherwise inconclusive. Premises: at least 5 seeds per group, both decu and vocu parents, and
    every parent solves the trained delays. Reported, deciding nothing: slowpoints minus centermass
    (is the effect specific to slow points?).
    """
    premises = [_premise(f"at least {MIN_NETWORKS} seeds per (architecture, parent)",
                         [k for k, d in runs.items() if len(d["slowpoints"]["long"]) < MIN_NETWORKS]),
                _premise("both decu and vocu parents fine-tuned", sorted({"decu", "vocu"} - {k[1] for k in runs})),
                _premise(f"every parent solves the trained delays (median network's 95% lower bound at least "
                         f"{SOLVED:.2f})", [k for k, d in runs.items() if not median_ci(d["parent"]["trained"])[1] >= SOLVED])]
    details, tests, parts = {}, [], []
    for key in sorted(runs):
        d = {mode: {m: np.asarray(v, float) for m, v in values.items()} for mode, values in runs[key].items()
             if mode != "specificity"}
        penalised = d["slowpoints"]["long"]
        vs_control, vs_parent = median_ci(penalised - d["control"]["long"]), median_ci(penalised - d["parent"]["long"])
        cost = median_ci(d["slowpoints"]["trained"] - d["control"]["trained"])
        p = max(median_p(penalised - d["control"]["long"]), median_p(penalised - d["parent"]["long"]))
        group = f"{key[0].upper()} ({key[1]} parents)"
        blocked = f"trained-delay change {cost[1]:+.3f} may be worse than −{max_loss}" if cost[1] < -max_loss else ""
        against = f"trained-delay change below −{max_loss} ({cost[2]:+.3f})" if cost[2] < -max_loss else ""
        tests.append(Test(group, min(vs_control[0], vs_parent[0]), min(vs_control[1], vs_parent[1]),
                          min(vs_control[2], vs_parent[2]), p, dramatic, blocked=blocked, contradicted=against))
        specific = runs[key].get("specificity")
        entry = {"seeds": len(penalised), "vs_control": list(vs_control), "vs_parent": list(vs_parent),
                 "trained_change": list(cost), "control_vs_parent": list(median_ci(d["control"]["long"] - d["parent"]["long"]))}
        text = (f"{group}, {len(penalised)} seeds: long-delay vs control {_interval(vs_control)}, vs parent "
                f"{_interval(vs_parent)}, trained-delay {_interval(cost)}")
        if specific and len(specific["slowpoints"]):
            over = median_ci(np.asarray(specific["slowpoints"], float) - np.asarray(specific["centermass"], float))
            entry["vs_centermass"] = list(over)
            text += (f"; vs centermass {_interval(over)} over {len(specific['slowpoints'])} seeds ("
                     + ("specific to slow points" if over[1] > 0 else "centermass does as well or better"
                        if over[2] <= 0 else "not shown specific to slow points") + ")")
        details[_key(key)] = entry
        parts.append(text)
    return _verdict("C6", c6_speed_penalty_helps, tests, premises, "; ".join(parts), details, scope)


RULES = {"C1": c1_equal_trained_accuracy, "C2": c2_protocols_differ, "C3": c3_slow_point_per_memory,
         "C4": c4_speed_predicts_memory, "C5": c5_formation_explains, "C6": c6_speed_penalty_helps}


def rule_text(claim: str) -> str:
    """The rule of ``claim`` as its docstring states it, for a chapter to show before it runs."""
    if claim not in RULES:
        raise ValueError(f"claim {claim!r} must be one of {tuple(RULES)}")
    return _rule(RULES[claim])


def scope_markdown(scope: Scope) -> str:
    s = scope
    text = (f"preset `{s.preset}`; datasets {', '.join(s.datasets)}; architectures "
            f"{', '.join(a.upper() for a in s.archs)}; {s.units} units; {s.steps} training steps; {s.model_form}; "
            f"{s.networks} networks")
    text += f"; search {s.search}" if s.search else ""
    text += f" ({s.search_iterations:,} reference-search iterations)" if s.search_iterations else ""
    return text + (f"; fine-tuning {s.finetune_steps:,} steps at λ = {s.lam:g}" if s.finetune_steps else "")


def premises_markdown(premises: list[dict]) -> str:
    return "; ".join(f"{p['premise']}: {'met' if p['met'] else 'unmet (' + ', '.join(p['failing']) + ')'}"
                     for p in premises)
