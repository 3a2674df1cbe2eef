"""The paper's six claims as verdict rules fixed before the data: one function per claim.

Each function takes measured results as plain arrays and dicts (never run directories), applies the
rule written in its docstring under "Rule:", and returns a :class:`Verdict`. The rule is part of
the verdict, so a chapter prints it before anything runs (:func:`rule_text`) and the verdict
after (:func:`memrnn.display.verdict_box`); no verdict logic lives in a notebook.

The paper claims its effects across datasets, so every rule decides **per dataset** (each dataset is
a test of its own: one whose networks cannot be tested must not erase one that can) and the claim's
verdict follows from the datasets' by :func:`combine`, whose rule every chapter states. Per dataset,
a verdict is one of four outcomes, each with its reason:

- **reproduced**: the effect the rule names is established in every group (each group's 95% interval
  clears it: an intersection-union test, so no multiplicity correction is needed);
- **partly reproduced**: an effect in the claim's direction is established in at least one group,
  Holm-corrected over every group of every dataset (family-wise error 5%), without the named effect
  everywhere;
- **not reproduced**: the evidence contradicts the claim: an interval excludes the named effect;
- **inconclusive**: a premise is unmet (the claim needs something the networks lack, e.g. they have
  not finished learning), a guard blocks every group (the reason says which), or the intervals include
  both no effect and the named effect (too little power).

Premises ask what each claim needs, relative to what the dataset allows (never a threshold only an
easy dataset meets): enough networks; that a condition solves the trained delays (:func:`_solves`);
and, for the claims about end states, that it has finished learning (``plateau``: {(dataset, arch,
protocol): bool} read off the learning curve by the caller; a condition missing from it is unknown,
so the premise is unmet). Slow points count only where they are states the network can visit
(``in_region``). Every verdict lists its premises and, per group, the smallest effect its design
detects with 80% power (:func:`memrnn.stats.detectable`). tests/test_claims.py measures the intervals'
coverage and every decision's false-positive rate at its threshold by simulation.

Wiring, claim by claim (arrays are over networks unless said otherwise; ``trained`` is
{(dataset, arch, protocol): trained-delay accuracy per network}; ``scope`` is a :class:`Scope`
filled in by the chapter):

- ``c1_equal_trained_accuracy(trained, plateau, scope)``
- ``c2_protocols_differ({(dataset, arch, protocol): long-delay accuracy per network}, trained, plateau, scope)``
- ``c3_slow_point_per_memory({search method: {"dataset": (N,), "speed", "speed_visited", "decoded",
  "in_region", "moved", "spread": (N, K), "points": N arrays (K, S)}}, trained, scope)``, N networks,
  K classes (:func:`memrnn.evidence.slow_points`)
- ``c4_speed_predicts_memory(memrnn.stats.speed_memory_rows(...), trained, scope)``
- ``c5_formation_explains(appears, introduced, long_accuracy, in_region, trained, plateau, scope)``
  (:func:`memrnn.evidence.formation`)
- ``c6_speed_penalty_helps({(dataset, arch, parent protocol): {"parent", "control", "slowpoints":
  {"long", "trained": per seed, paired}, "anchors_in_region": share, "specificity": {"slowpoints",
  "centermass": long per seed}}}, scope)`` (:func:`memrnn.evidence.finetune_pairs`)
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats

from .protocols import PROTOCOL_NAMES
from .stats import (clustered_proportion, detectable, median_ci, median_p, median_upper, shift_ci,
                    spearman_ci, within_unit_spearman)

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive")
# The protocols the paper trained. ``none`` is defined in the reference code but was never run by the
# paper: chapters show it beside the paper's protocols, and the verdicts judge the paper's claims on
# the paper's protocols only.
PAPER_PROTOCOLS = ("decu", "vocu")
CHANCE = 0.1       # chance accuracy: one in the 10 classes of every dataset the book uses
LEARNT = 0.5       # the task is learnt: halfway from chance to perfect (C1's floor; every claim's dataset premise)
SOLVED = 0.75      # a condition solves the trained delays: 3/4 of the way from chance to its dataset's best condition
MIN_NETWORKS = 5   # premise: the fewest networks per condition for which a distribution-free interval exists
ALPHA = 0.05       # family-wise error of "partly reproduced" (Holm over groups)
DRAMATIC = 0.10    # C6: the retention gain the rule calls "dramatic"
MOVED = 0.01       # C3: a point moved from its start when farther from it than this many class spreads
DATASET_NAMES = {"mnist": "MNIST", "mnist-5k": "MNIST-5k", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                 "synthetic": "synthetic images"}


def dataset_name(dataset: str) -> str:
    """A dataset as the book writes it in words."""
    return DATASET_NAMES.get(dataset, dataset)


def condition_name(key, with_dataset: bool = True) -> str:
    """A (dataset, arch, protocol) condition in words, e.g. "GRU · DeCu on Fashion-MNIST"."""
    dataset, arch, protocol = key
    name = f"{arch.upper()} · {PROTOCOL_NAMES.get(protocol, protocol)}"
    return f"{name} on {dataset_name(dataset)}" if with_dataset else name


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
    per_condition: int = 0       # networks per condition
    arithmetic: str = ""         # what trained the networks (memrnn.presets.arithmetic): "fast" or "float32"

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
    premises: list = field(default_factory=list)   # [{"premise", "met", "failing", "unmet"}]
    detectable: str = ""                           # smallest effect detectable at this n, per group
    by_dataset: dict = field(default_factory=dict)  # {dataset: {"verdict", "reason", "statistic", "premises", "summary"}}
    summary: str = ""                              # one line in words, per dataset: what decided it

    def __post_init__(self):
        for verdict in [self.verdict, *(d["verdict"] for d in self.by_dataset.values())]:
            if verdict not in VERDICTS:
                raise ValueError(f"verdict {verdict!r} must be one of {VERDICTS}")

    def to_dict(self) -> dict:
        return {"claim": self.claim, "verdict": self.verdict, "statistic": self.statistic, "rule": self.rule,
                "reason": self.reason, "summary": self.summary, "premises": self.premises,
                "detectable": self.detectable, "by_dataset": self.by_dataset, "details": self.details,
                "scope": self.scope.to_dict()}


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


def _names(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def _premise(text: str, unmet: dict, short: str = "", sentence: str = "") -> dict:
    """A premise: ``text`` says what the claim needs; ``unmet`` maps what lacks it (in words) to a
    sentence saying how; ``sentence``, when given, says it for all of them at once (the reason's
    words); ``short`` is the landing page's phrase for it when unmet."""
    return {"premise": text, "met": not unmet, "failing": list(unmet), "unmet": list(unmet.values()),
            "sentence": sentence if unmet else "", "short": short if unmet else ""}


def _together(keys) -> str:
    """Conditions of one dataset in words, the dataset named once: "GRU · VoCu and LSTM · VoCu on Fashion-MNIST"."""
    keys = list(keys)
    return f"{_names([condition_name(k, False) for k in keys])} on {dataset_name(keys[0][0])}"


def _datasets(trained: dict | None = None, **inputs) -> list[str]:
    """The datasets the claim is given (the first item of each input's keys): a dataset or condition
    that one input has and another lacks is an error naming it, never a dataset silently unchecked."""
    named = {name: {k[0] for k in keys} for name, keys in inputs.items()}
    if trained is not None:
        named["trained"] = {k[0] for k in trained}
    every = set().union(*named.values())
    for name, found in named.items():
        if every - found:
            raise ValueError(f"{name} lacks dataset(s) {sorted(every - found)} that another input has: every "
                             "dataset a rule is given must be in every input")
    if trained is not None:
        for name, keys in inputs.items():
            missing = sorted({k for k in keys if len(k) == 3} - set(trained))
            if missing:
                raise ValueError(f"trained lacks condition(s) {[_key(k) for k in missing]} that {name} has")
    return sorted(every)


def _networks(values: dict) -> dict:
    few = [k for k, v in values.items() if len(v) < MIN_NETWORKS]
    return _premise(f"at least {MIN_NETWORKS} networks per condition",
                    {condition_name(k): f"{condition_name(k)} has only {len(values[k])} networks" for k in few},
                    "too few networks per condition",
                    f"{_together(few)} {'has' if len(few) == 1 else 'have'} too few networks "
                    f"({', '.join(str(len(values[k])) for k in few)}; at least {MIN_NETWORKS} needed)" if few else "")


def _solves(trained: dict, chance: float = CHANCE) -> list[dict]:
    """The premises that the networks hold memories at all, relative to what the dataset allows: the
    dataset's best condition is at least halfway from chance to perfect (the task is learnt there), and
    every condition's median network's 95% lower bound is at least 3/4 of the way from chance to that
    best condition's median (it solves the trained delays as well as this dataset lets a network)."""
    levels = {k: median_ci(v) for k, v in trained.items()}
    best = max(m[0] for m in levels.values())
    learnt, need = chance + LEARNT * (1 - chance), chance + SOLVED * (best - chance)
    dataset = dataset_name(next(iter(trained))[0])
    lacking = [k for k, m in levels.items() if not m[1] >= need]
    return [_networks(trained),
            _premise("the task is learnt on the dataset: its best condition's median network at least halfway "
                     "from chance to perfect",
                     {dataset: f"no condition on {dataset} has learnt the task (best median {best:.3f}, below "
                               f"{learnt:.3f}, halfway from chance {chance:g} to perfect)"} if best < learnt else {},
                     "the task is not learnt"),
            _premise("every condition solves the trained delays: its median network's 95% lower bound at least 3/4 "
                     "of the way from chance to the best condition of its dataset",
                     {condition_name(k): f"{condition_name(k)} does not yet solve the trained delays (lower bound "
                                         f"{levels[k][1]:.3f}; needs {need:.3f}, 3/4 of the way from chance {chance:g} "
                                         f"to the best condition's {best:.3f})" for k in lacking},
                     f"{_names([condition_name(k, False) for k in lacking])} "
                     f"do{'es' * (len(lacking) == 1)} not yet solve the trained delays")]


def _finished(keys, plateau: dict, steps: int) -> dict:
    """The premise that every condition has finished learning, as the learning curve judged it."""
    unmet = {}
    for k in keys:
        if k not in plateau:
            unmet[condition_name(k)] = (f"whether {condition_name(k)} has finished learning is unknown (no plateau "
                                        "judgement on the learning curve)")
        elif not plateau[k]:
            unmet[condition_name(k)] = f"{condition_name(k)} is still learning at {steps:,} steps (no plateau)"
    still = [k for k in keys if plateau.get(k) is False]
    unknown = [k for k in keys if k not in plateau]
    sentence = "; ".join(
        ([f"{_together(still)} {'is' if len(still) == 1 else 'are'} still learning at {steps:,} steps (no plateau)"]
         if still else [])
        + ([f"whether {_together(unknown)} finished learning is unknown (no plateau judgement on the learning curve)"]
           if unknown else []))
    if len(still) == len(keys):
        short = f"networks still learning at {steps:,} steps"
    elif still:
        short = f"{_names([condition_name(k, False) for k in still])} still learning at {steps:,} steps"
    else:
        short = "whether the networks finished learning is unknown"
    return _premise("every condition has finished learning (its plateau on the learning curve)", unmet, short, sentence)


def holm(p, alpha: float = ALPHA) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects at family-wise error ``alpha``."""
    order, rejected = np.argsort(p), [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        rejected[i] = True
    return rejected


def combine(by_dataset: dict) -> tuple[str, str]:
    """The claim's verdict from its verdicts per dataset ({dataset: verdict}), with why.

    Rule: a dataset decides when its verdict is not inconclusive. The claim is reproduced when every
    deciding dataset reproduces it, not reproduced when every deciding dataset contradicts it, partly
    reproduced when the deciding datasets differ or one of them partly reproduces it, and inconclusive
    when no dataset decides. An undecided dataset changes nothing: it is named beside the verdict.
    """
    deciding = {d: v for d, v in by_dataset.items() if v != "inconclusive"}
    undecided = [dataset_name(d) for d in by_dataset if d not in deciding]
    if not deciding:
        return "inconclusive", "no dataset decides"
    outcomes = set(deciding.values())
    verdict = outcomes.pop() if len(outcomes) == 1 and outcomes <= {"reproduced", "not reproduced"} else "partly reproduced"
    why = "; ".join(f"{v} on {dataset_name(d)}" for d, v in deciding.items())
    return verdict, why + (f"; {_names(undecided)} undecided" if undecided else "")


COMBINATION = _rule(combine)


def _short(group: str, dataset: str) -> str:
    return group.replace(f" on {dataset_name(dataset)}", "")


def _decide(tests: list[Test], premises: list[dict], established: set, dataset: str) -> tuple[str, str, str]:
    """One dataset's outcome, its reason and a one-line summary (see the module docstring)."""
    unmet = [p for p in premises if not p["met"]]
    if unmet:
        return ("inconclusive", "premise unmet: " + "; ".join(p["sentence"] or "; ".join(p["unmet"]) for p in unmet),
                "; ".join(p["short"] for p in unmet))
    if not tests:
        return "inconclusive", "nothing to test", "nothing to test"

    def names(group):
        return ", ".join(_short(t.group, dataset) for t in group)

    effect = [t for t in tests if id(t) in established]
    against = [t for t in tests if t.high < t.effect or t.contradicted]
    blocked = [t for t in tests if t.blocked]
    excluded = ", ".join(f"{t.group} ({t.contradicted or f'upper bound {t.high:.2f} < {t.effect:g}'})" for t in against)
    blocks = "; ".join(f"{t.group} cannot count: {t.blocked}" for t in blocked)
    if all(t.low >= t.effect and not t.blocked and not t.contradicted for t in tests):
        return "reproduced", "the named effect is established in every group (" + ", ".join(
            f"{t.group}: lower bound {t.low:.2f} ≥ {t.effect:g}" for t in tests) + ")", "the named effect in every group"
    if effect:
        short = [t for t in tests if t.low < t.effect or t.blocked or t.contradicted]
        reason = (f"an effect is established in {', '.join(t.group for t in effect)} (Holm over every group of every "
                  f"dataset, family-wise 5%), but not the named effect in {', '.join(t.group for t in short)}"
                  + (f"; {blocks}" if blocks else "")
                  + (f"; heterogeneous between groups: the named effect is excluded in {excluded}" if against else ""))
        return "partly reproduced", reason, (f"an effect in {names(effect)}, not the named effect in {names(short)}"
                                             + (" (the groups differ)" if against else ""))
    if against:
        return ("not reproduced", "the evidence excludes the named effect in " + excluded,
                f"the named effect excluded in {names(against)}")
    weak = [t for t in tests if t.detectable > t.effect and not t.blocked]
    rest = [t for t in tests if not t.blocked]
    reason = "; ".join(
        ([blocks] if blocked else [])
        + ([("every other" if blocked else "every") + " interval includes both no effect and the named effect" + (
            "; too little power: the smallest detectable effect exceeds the named one in " + ", ".join(
                f"{t.group} ({t.detectable:.2f} > {t.effect:g})" for t in weak) if weak else "")] if rest else []))
    summary = (f"{names(blocked)} cannot count ({blocked[0].blocked})" if blocked
               else "too little power to decide" if weak else "the intervals include both no effect and the named effect")
    return "inconclusive", reason, summary


def _power(tests: list[Test]) -> str:
    return "; ".join(f"{t.group}: {t.detectable:.2f} (named {t.effect:g})" for t in tests) or "n/a (nothing tested)"


def _merge(premises_by_dataset: dict) -> list[dict]:
    """The premises over every dataset: met where met in each, failing what fails in any."""
    merged = {}
    for premises in premises_by_dataset.values():
        for p in premises:
            m = merged.setdefault(p["premise"], {"premise": p["premise"], "met": True, "failing": [], "unmet": []})
            m["met"] &= p["met"]
            m["failing"] += p["failing"]
            m["unmet"] += p["unmet"]
    return list(merged.values())


def _estimate(name: str, estimate: float, low: float, high: float) -> dict:
    return {"name": name, "estimate": float(estimate), "low": float(low), "high": float(high)}


def _verdict(claim, fn, parts: dict, details: dict, scope, cap: str = "") -> Verdict:
    """The claim's verdict from ``parts`` ({dataset: {"tests", "premises", "statistic"} and optionally
    "decided": (verdict, reason, summary), "note" and "estimates"}): each dataset decided, then :func:`combine`.
    Each dataset keeps its key statistics with their 95% intervals ("estimates": those a rule deciding
    without tests gives, then every test's, on the claim's scale), so two editions can be compared number
    by number (:mod:`memrnn.editions`)."""
    pool = [t for part in parts.values() if "decided" not in part and all(p["met"] for p in part["premises"])
            for t in part["tests"] if not t.blocked and not t.contradicted]
    established = {id(t) for t, h in zip(pool, holm([t.p for t in pool])) if h}
    by_dataset = {}
    for dataset, part in parts.items():
        verdict, reason, summary = part.get("decided") or _decide(part["tests"], part["premises"], established, dataset)
        if cap and verdict == "reproduced":
            verdict, reason, summary = "partly reproduced", f"{reason}; {cap}: capped at partly", f"{summary} ({cap})"
        if part.get("note"):
            reason = f"{reason} ({part['note']})"
        estimates = part.get("estimates", []) + [_estimate(_short(t.group, dataset), t.estimate, t.low, t.high)
                                                 for t in part["tests"]]
        by_dataset[dataset] = {"verdict": verdict, "reason": reason, "statistic": part["statistic"],
                               "premises": part["premises"], "summary": f"{dataset_name(dataset)}: {summary}",
                               "estimates": estimates}
    verdict, why = combine({d: b["verdict"] for d, b in by_dataset.items()})
    reason = why + " — " + "; ".join(f"{dataset_name(d)}: {b['reason']}" for d, b in by_dataset.items())
    statistic = "; ".join(f"{dataset_name(d)}: {b['statistic']}" for d, b in by_dataset.items())
    tests = [t for part in parts.values() for t in part["tests"]]
    details = {**details, "tests": [t.to_dict() for t in tests]}
    return Verdict(claim, verdict, statistic, _rule(fn) + " " + COMBINATION, details, scope, reason,
                   _merge({d: p["premises"] for d, p in parts.items()}), _power(tests), by_dataset,
                   "; ".join(b["summary"] for b in by_dataset.values()))


def _interval(values) -> str:
    m, low, high = values
    return f"{m:.3f} [{low:.3f}, {high:.3f}]"


def c1_equal_trained_accuracy(accuracy: dict, plateau: dict, scope: Scope, margin: float = 0.03,
                              loose_margin: float = 0.10, chance: float = CHANCE) -> Verdict:
    """C1: protocols, datasets and architectures solve the trained delays equally well.

    Rule: within each dataset, every condition (architecture, protocol) gets the median network's
    trained-delay accuracy with its order-statistic interval, and every pair of conditions the
    Hodges-Lehmann shift with its exact Mann-Whitney interval. The floor is halfway from chance to
    perfect (0.55 with 10 classes), which a network that solves the task meets on any dataset.
    Reproduced: every condition's lower bound is at least the floor and every pair's interval lies
    inside ±0.03 (an equivalence test). Partly: every lower bound at least the floor and every pair
    inside ±0.10. Not reproduced: a condition's median shown below the floor or a pair shown apart by
    more than ±0.10, each at a Bonferroni-corrected level over the dataset's conditions and pairs
    (one-sided 5% / their number). Otherwise inconclusive. Premises: at least two conditions with at
    least 5 networks each, and every condition has finished learning (its plateau on the learning
    curve): the claim is about what training ends with, so a condition still learning cannot show it.
    """
    datasets = _datasets(accuracy=accuracy)
    floor = chance + LEARNT * (1 - chance)
    parts, details, lowest, widest = {}, {"levels": {}, "pairs": []}, [], []
    for dataset in datasets:
        keys = sorted(k for k in accuracy if k[0] == dataset)
        levels = {k: median_ci(accuracy[k]) for k in keys}
        pairs, family = [], len(keys) + len(keys) * (len(keys) - 1) // 2
        for a, b in combinations(keys, 2):
            diff, low, high, _ = shift_ci(accuracy[a], accuracy[b])
            _, far_low, far_high, _ = shift_ci(accuracy[a], accuracy[b], level=1 - 2 * ALPHA / family)
            pairs.append({"a": _key(a), "b": _key(b), "diff": diff, "ci95": [low, high], "bound": max(-low, high),
                          "apart": bool(far_low > loose_margin or far_high < -loose_margin),
                          "detectable": detectable(low, high, power=0.9), "names": (condition_name(a), condition_name(b))})
        below = [k for k in keys if median_upper(accuracy[k], ALPHA / family) < floor]
        premises = [_premise("at least two conditions in every dataset",
                             {dataset_name(dataset): f"{dataset_name(dataset)} has only one condition"} if len(keys) < 2
                             else {}, "only one condition"),
                    _networks({k: accuracy[k] for k in keys}), _finished(keys, plateau, scope.steps)]
        low_bound = min(v[1] for v in levels.values())
        wide = max((p["bound"] for p in pairs), default=float("nan"))
        apart = [p for p in pairs if p["apart"]]
        if not all(p["met"] for p in premises):
            decided = _decide([], premises, set(), dataset)
        elif low_bound >= floor and wide <= margin:
            decided = ("reproduced", f"every lower bound ≥ {floor:.2f}, every pair within ±{margin}",
                       f"every condition solves, all within ±{margin}")
        elif low_bound >= floor and wide <= loose_margin:
            decided = ("partly reproduced", f"every lower bound ≥ {floor:.2f}; pairs within ±{loose_margin}, not "
                       f"±{margin}", f"all within ±{loose_margin}, not ±{margin}")
        elif below or apart:
            decided = ("not reproduced", "; ".join(
                [f"{condition_name(k)} is below the floor {floor:.2f} (Bonferroni over {family})" for k in below]
                + [f"{p['names'][0]} and {p['names'][1]} differ by more than ±{loose_margin} (Bonferroni over {family})"
                   for p in apart]),
                "; ".join([f"{_names([condition_name(k, False) for k in below])} below the floor"] * bool(below)
                          + [f"{len(apart)} pair{'s' * (len(apart) > 1)} of conditions apart by more than "
                             f"±{loose_margin}"] * bool(apart)))
        else:
            decided = ("inconclusive", f"the intervals include both equal and unequal accuracy (lowest lower bound "
                       f"{low_bound:.3f}, widest pair bound ±{wide:.3f})", "too little power to decide")
        estimates = ([_estimate(f"{condition_name(k, False)}: median trained-delay accuracy", *levels[k]) for k in keys]
                     + [_estimate(f"{condition_name(a, False)} minus {condition_name(b, False)}: trained-delay shift",
                                  p["diff"], *p["ci95"]) for (a, b), p in zip(combinations(keys, 2), pairs)])
        parts[dataset] = {"tests": [], "premises": premises, "decided": decided, "estimates": estimates,
                          "statistic": f"lowest condition's lower bound {low_bound:.3f} (median network; floor "
                                       f"{floor:.2f}); every pairwise shift within ±{wide:.3f} (95% bound, "
                                       f"{len(pairs)} pairs)"}
        details["levels"].update({_key(k): list(v) for k, v in levels.items()})
        details["pairs"] += [{k: v for k, v in p.items() if k != "names"} for p in pairs]
        lowest.append(low_bound)
        widest.append(wide)
    details.update(lowest_bound=min(lowest), widest_ci_bound=max(widest), floor=floor)
    verdict = _verdict("C1", c1_equal_trained_accuracy, parts, details, scope)
    power = max((p["detectable"] for p in details["pairs"]), default=float("nan"))
    verdict.detectable = f"smallest margin within which equality can be shown (90% power): ±{power:.3f} (rule: ±{margin})"
    return verdict


def c2_protocols_differ(long_accuracy: dict, trained: dict, plateau: dict, scope: Scope, gap: float = 0.10,
                        chance: float = CHANCE) -> Verdict:
    """C2: protocols differ a lot in extrapolation to long delays.

    Rule: within each (dataset, architecture), never pooled over architectures, the best minus the
    worst paper protocol in long-delay accuracy (one value per network): the Hodges-Lehmann shift
    with its exact Mann-Whitney 95% interval and two-sided p-value. Reproduced: the lower bound is at
    least 0.10 in every architecture. Partly: a difference (Holm over every group) somewhere. Not
    reproduced: an upper bound below 0.10. Otherwise inconclusive. Premises: at least two protocols
    per architecture; every condition solves the trained delays (relative to its dataset) with at
    least 5 networks, and has finished learning: a condition still learning or undertrained forgets
    for another reason than its protocol.
    """
    datasets = _datasets(trained, long_accuracy=long_accuracy)
    parts, details = {}, {}
    for dataset in datasets:
        groups = {}
        for (d, arch, protocol), values in long_accuracy.items():
            if d == dataset:
                groups.setdefault(arch, {})[protocol] = np.asarray(values, dtype=float)
        keys = sorted(k for k in long_accuracy if k[0] == dataset)
        premises = [_premise("at least two protocols per architecture",
                             {f"{a.upper()} on {dataset_name(dataset)}": f"{a.upper()} on {dataset_name(dataset)} has "
                              "one protocol" for a, v in groups.items() if len(v) < 2}, "one protocol"),
                    *_solves({k: v for k, v in trained.items() if k[0] == dataset}, chance),
                    _finished(keys, plateau, scope.steps)]
        tests, texts = [], []
        for arch in sorted(groups):
            by_protocol = groups[arch]
            if len(by_protocol) < 2:
                continue
            medians = {k: float(np.median(v)) for k, v in by_protocol.items()}
            best, worst = max(medians, key=medians.get), min(medians, key=medians.get)
            diff, low, high, p = shift_ci(by_protocol[best], by_protocol[worst])
            # best and worst are chosen by the data: the two-sided p is the honest one
            tests.append(Test(f"{arch.upper()} on {dataset_name(dataset)}", diff, low, high, p, gap))
            details[_key((dataset, arch))] = {"medians": medians, "best": best, "worst": worst, "gap": diff,
                                              "gap_ci95": [low, high], "p": p}
            order = f"{best} longest, {worst} shortest" if medians[best] > medians[worst] else "protocols tied"
            texts.append(f"{arch.upper()}: {order}, gap {diff:.2f} [{low:.2f}, {high:.2f}], Mann-Whitney p = {p:.2g}")
        parts[dataset] = {"tests": tests, "premises": premises,
                          "statistic": "; ".join(texts) or "fewer than two protocols per architecture"}
    return _verdict("C2", c2_protocols_differ, parts, details, scope)


def _slow_point_counts(m: dict, keep, slower: float) -> tuple[np.ndarray, dict]:
    """Which (network, class) points of the networks ``keep`` count for C3, and the shares of each test."""
    speed, visited = np.asarray(m["speed"], float)[keep], np.asarray(m["speed_visited"], float)[keep]
    decoded, spread = np.asarray(m["decoded"])[keep], np.asarray(m["spread"], float)[keep]
    inside, moved = np.asarray(m["in_region"], bool)[keep], np.asarray(m["moved"], float)[keep]
    classes = np.arange(speed.shape[1])
    # per network: its points live in its own state space (GRU and LSTM sizes differ)
    gaps = np.stack([np.linalg.norm(np.asarray(p, float)[:, None] - np.asarray(p, float)[None], axis=-1)
                     for p, k in zip(m["points"], keep) if k])
    gaps[:, classes, classes] = np.inf
    own, slow, distinct = decoded == classes, speed <= visited / slower, gaps.min(-1) > spread
    left = moved > MOVED * spread
    counts = inside & own & slow & distinct & left
    return counts, {"in_region": float(inside.mean()), "on_boundary": float(1 - inside.mean()),
                    "own_class": float(own.mean()), "slower": float(slow.mean()), "distinct": float(distinct.mean()),
                    "moved": float(left.mean()), "points": int(counts.size),
                    "median_speed_ratio": float(np.median(speed / visited)),
                    # a class with one decoded trial has no spread to measure the move in
                    "median_moved": float(np.median(moved[spread > 0] / spread[spread > 0])) if (spread > 0).any()
                    else float("nan"),
                    "unmoved": float((~left).mean())}


def c3_slow_point_per_memory(methods: dict, trained: dict, scope: Scope, slower: float = 10.0, most: float = 0.9,
                             half: float = 0.5, chance: float = CHANCE) -> Verdict:
    """C3: each memory is associated with a slow point.

    Rule: a (network, class) slow point counts when (0) it is a state the network can reach: h in
    the open (−1, 1)^H (GRU and tanh RNN; LSTM: h in (−1, 1), c unbounded, speed measured in
    (h, tanh c)), so a point left on the boundary of the reference search's clip box [−1, 1] does not
    count; (i) the trigger at it reports its class; (ii) its speed is at most 1/10 of the median speed
    of the states the network visits during the delay after images of that class; (iii) it is
    distinct: the nearest other class's point of the same network lies farther away than the RMS
    distance of the class's own trial states to their centroid; (iv) the search moved it from its
    start, by more than 1/100 of that distance (a start state decodes its own class by construction).
    Per dataset and search method, the share of points that count gets a 95% Clopper-Pearson interval
    on the effective number of points (Kish's design effect: points of one network are clustered).
    Reproduced: the lower bound is at least 0.9 under at least two searches (ours and the
    reference's). Partly: a share above 0.5 (Holm over every group). Not reproduced: an upper bound
    below 0.9. Otherwise inconclusive. Premises: every condition solves the trained delays (relative
    to its dataset) with at least 5 networks. Reported, deciding nothing: each search's share of
    points on the clip boundary and how far points moved from their start.
    """
    given = {(d,) for m in methods.values() for d in np.asarray(m["dataset"]).tolist()}
    datasets = _datasets(trained, slow_points=given)
    parts, details = {}, {}
    for method, m in methods.items():  # reported over every dataset, deciding nothing
        counts, shares = _slow_point_counts(m, np.ones(len(m["points"]), bool), slower)
        details[method] = {"fraction": float(counts.mean()), "ci95": clustered_proportion(counts)["ci95"], **shares}
    for dataset in datasets:
        tests, texts, entry = [], [], {}
        for method, m in methods.items():
            keep = np.asarray(m["dataset"]) == dataset
            counts, shares = _slow_point_counts(m, keep, slower)
            share = clustered_proportion(counts, above=half)
            tests.append(Test(f"{method} on {dataset_name(dataset)}", share["share"], *share["ci95"], share["p"], most,
                              half))
            entry[method] = {"fraction": share["share"], "ci95": share["ci95"], "effective_n": share["effective_n"],
                             **shares}
            texts.append(f"{method}: {share['share']:.0%} [{share['ci95'][0]:.0%}, {share['ci95'][1]:.0%}] of "
                         f"{counts.size} points count (reachable {shares['in_region']:.0%}, own class "
                         f"{shares['own_class']:.0%}, {slower:g}x slower than visited states {shares['slower']:.0%}, "
                         f"distinct {shares['distinct']:.0%}, moved from the start {shares['moved']:.0%}); "
                         f"{shares['on_boundary']:.0%} end on the clip boundary")
        details.setdefault("by_dataset", {})[dataset] = entry
        parts[dataset] = {"tests": tests, "statistic": "; ".join(texts),
                          "premises": _solves({k: v for k, v in trained.items() if k[0] == dataset}, chance)}
    cap = "only one search method" if len(methods) < 2 else ""
    return _verdict("C3", c3_slow_point_per_memory, parts, details, scope, cap)


def c4_speed_predicts_memory(rows: list[dict], trained: dict, scope: Scope, strength: float = -0.3,
                             chance: float = CHANCE) -> Verdict:
    """C4: slow-point speed predicts extrapolation.

    Rule: only slow points inside the region the network can reach count (a point on the clip
    boundary is no state of the network; how many were left out is reported). Inside each network,
    the Spearman correlation over its classes of log10 slow-point speed with the class's long-delay
    accuracy; per (dataset, architecture, protocol) condition the median network's correlation with
    its order-statistic 95% interval and a sign test over networks, so an association that exists
    only between networks or between protocols counts for nothing. Reproduced: the interval lies
    below −0.3 in every condition. Partly: below 0 in at least one (Holm over every group). Not
    reproduced: above −0.3 in one (conditions that disagree are reported as heterogeneous, not as too
    little power). Otherwise inconclusive. Premises: every condition solves the trained delays
    (relative to its dataset) with at least 5 networks, at least 5 of them with a correlation (speeds
    and accuracies that vary over classes). Reported, deciding nothing: the association between
    networks (network-mean speed against network-mean accuracy) and the correlation pooled over the
    protocols of an architecture (within and between conditions mixed).
    """
    def condition(r):
        return r["dataset"], r["arch"], r["protocol"]

    def pooled(rows):  # reported, deciding nothing: (network, class) rows pooled, a network jackknife
        rows = [r for r in rows if r.get("in_region", True)]
        return spearman_ci([r["log10_speed"] for r in rows], [r["long_delay_accuracy"] for r in rows],
                           [f"{r['run']}/{r['seed']}" for r in rows])

    datasets = _datasets(trained, rows={condition(r) for r in rows})
    parts, details = {}, {"pooled": pooled(rows)}
    for dataset in datasets:
        tests, texts, few, outside = [], [], {}, 0
        for key in sorted({condition(r) for r in rows if r["dataset"] == dataset}):
            given = [r for r in rows if condition(r) == key]
            inside = [r for r in given if r.get("in_region", True)]
            outside += len(given) - len(inside)
            per = within_unit_spearman([r["log10_speed"] for r in inside], [r["long_delay_accuracy"] for r in inside],
                                       [f"{r['run']}/{r['seed']}" for r in inside])
            r = np.array(list(per.values()))
            if len(r) < MIN_NETWORKS:
                few[condition_name(key)] = f"{condition_name(key)} has {len(r)} networks with a correlation"
                continue
            median, low, high = median_ci(r)
            tests.append(Test(condition_name(key), -median, -high, -low, median_p(-r), -strength))
            between = _between_networks(inside)
            entry = details.setdefault(_key(key[:2]), {"conditions": {}})
            entry["conditions"][key[2]] = {"r": median, "ci95": [low, high], "networks": len(r),
                                           "excluded": len(given) - len(inside), "between_networks": between}
            texts.append(f"{condition_name(key, False)}: within-network Spearman r = {_f(median)} [{_f(low)}, "
                         f"{_f(high)}] over {len(r)} networks (between networks {_f(between['r'])})")
        for arch in sorted({r["arch"] for r in rows if r["dataset"] == dataset}):
            details.setdefault(_key((dataset, arch)), {"conditions": {}})["pooled_over_protocols"] = pooled(
                [r for r in rows if (r["dataset"], r["arch"]) == (dataset, arch)])
        total = sum(r["dataset"] == dataset for r in rows)
        note = f"{outside} of {total} slow points on the clip boundary excluded" if outside else ""
        premises = [*_solves({k: v for k, v in trained.items() if k[0] == dataset}, chance),
                    _premise(f"at least {MIN_NETWORKS} networks per condition with a within-network correlation", few,
                             "too few networks with a correlation")]
        parts[dataset] = {"tests": tests, "premises": premises, "note": note,
                          "statistic": "; ".join(texts + [note]) if note else "; ".join(texts)}
    return _verdict("C4", c4_speed_predicts_memory, parts, details, scope)


def _between_networks(rows: list[dict]) -> dict:
    """Spearman r over networks of each network's mean log speed with its mean long-delay accuracy."""
    networks = {}
    for r in rows:
        networks.setdefault(f"{r['run']}/{r['seed']}", []).append((r["log10_speed"], r["long_delay_accuracy"]))
    means = np.array([np.mean(v, axis=0) for v in networks.values()])
    return spearman_ci(means[:, 0], means[:, 1]) if len(means) >= 3 else {"r": None, "ci95": [None, None]}


def _rank_test(x, y, group: str, effect: float) -> Test | None:
    """Spearman r of y with x over independent units as a Test on the claim's scale (positive effect),
    with a Fisher-z 95% interval (Bonett-Wright standard error)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    sign = np.sign(effect)
    r = float(stats.spearmanr(x, y).statistic)
    p = float(stats.spearmanr(x, y, alternative="greater" if sign > 0 else "less").pvalue)
    se = np.sqrt((1 + r ** 2 / 2) / (len(x) - 3))
    z = np.arctanh(np.clip(r, -0.999999, 0.999999))
    zl, zh = z - stats.norm.ppf(0.975) * se, z + stats.norm.ppf(0.975) * se
    low, high = sorted((sign * np.tanh(zl), sign * np.tanh(zh)))
    return Test(group, sign * r, float(low), float(high), p, abs(effect), detectable=float(np.tanh(detectable(zl, zh))))


def _partial_rank_test(x, y, given, group: str, effect: float) -> Test:
    """The partial Spearman correlation of y with x given ``given`` (Pearson's partial correlation of
    the ranks) as a Test on the claim's scale, with a Fisher-z 95% interval (standard error
    1/sqrt(n - 4)); no interval (−1 to 1) where ``given`` fixes x or y, so nothing is left to correlate."""
    ranks = [stats.rankdata(v) for v in (x, y, given)]
    if min(np.ptp(v) for v in ranks) == 0:
        return Test(group, 0.0, -1.0, 1.0, 1.0, effect)
    r = np.corrcoef(ranks)
    rxy, rxz, ryz = r[0, 1], r[0, 2], r[1, 2]
    if max(abs(rxz), abs(ryz)) > 1 - 1e-9:
        return Test(group, 0.0, -1.0, 1.0, 1.0, effect)
    partial = float(np.clip((rxy - rxz * ryz) / np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2)), -0.999999, 0.999999))
    z, se = np.arctanh(partial), 1 / np.sqrt(len(x) - 4)
    zl, zh = z - stats.norm.ppf(0.975) * se, z + stats.norm.ppf(0.975) * se
    return Test(group, partial, float(np.tanh(zl)), float(np.tanh(zh)), float(stats.norm.sf(z / se)), effect,
                detectable=float(np.tanh(detectable(zl, zh))))


def _nanmedian(values, axis: int) -> np.ndarray:
    """Median over what was measured (NaN: missing); NaN where nothing was."""
    values = np.asarray(values, float)
    some = np.isfinite(values).any(axis)
    out = np.full(some.shape, np.nan)
    out[some] = np.nanmedian(np.compress(some, values, axis=1 - axis), axis)
    return out


def c5_formation_explains(appears: dict, introduced: dict, long_accuracy: dict, in_region: dict, trained: dict,
                          plateau: dict, scope: Scope, follows: float = 0.5, strength: float = -0.3,
                          chance: float = CHANCE) -> Verdict:
    """C5: tracking slow-point formation explains the protocol differences.

    Rule: appearance is located without the readout (first checkpoint from which the traced point
    stays slow, in the region and without a jump), as a fraction of training; a point never traced,
    or whose final point lies on the clip boundary (no state of the network), is missing, not late.
    Per dataset and architecture: (a) a class's slow point forms once vocu introduces its class: the
    order of the classes' median formation times in vocu follows the order vocu introduces them, beyond
    the order the same classes form in under decu: the partial Spearman correlation over classes of vocu's
    formation rank with the introduction step, given decu's formation rank (ranks within a protocol, so a
    class order both protocols share cancels whether vocu shifts or stretches every class's formation;
    orders identical in both protocols test nothing), with a Fisher-z 95% interval, the named effect
    r ≥ 0.5; a class whose median vocu point forms before vocu introduces it contradicts (a). (b) Within each paper protocol, networks whose points form earlier (median
    over their traced classes) keep memories longer: Spearman r over networks of appearance with
    long-delay accuracy, the named effect r ≤ −0.3. Reproduced: the named effects of (a) and (b)
    established in every test. Partly: an effect in the claim's direction in at least one (Holm over
    every group). Not reproduced: an interval excludes its named effect, or (a) is contradicted.
    Otherwise inconclusive. Premises: every condition solves the trained delays (relative to its
    dataset) with at least 5 networks and has finished learning (the traces end on a network still
    changing otherwise); both protocols have traced points for at least 5 classes. Which protocol
    forms earlier is reported (a tie when the shift's interval includes 0), deciding nothing.
    """
    datasets = _datasets(trained, appears=appears, long_accuracy=long_accuracy, in_region=in_region,
                         introduced=introduced)
    parts, details = {}, {}
    for dataset in datasets:
        tests, texts, sparse, outside = [], [], {}, []
        masked = {k: np.where(np.asarray(in_region[k], bool), np.asarray(v, float), np.nan)
                  for k, v in appears.items() if k[0] == dataset}
        for key, v in masked.items():
            off = int((~np.asarray(in_region[key], bool)).sum())
            if off:
                outside.append(f"{off} of {v.size} final points of {condition_name(key, False)} on the clip boundary")
        for arch in sorted({k[1] for k in masked}):
            entry = details.setdefault(_key((dataset, arch)), {})
            name = f"{arch.upper()} on {dataset_name(dataset)}"
            vocu, decu = masked.get((dataset, arch, "vocu")), masked.get((dataset, arch, "decu"))
            when = np.asarray(introduced[(dataset, arch)], float)
            if vocu is not None and decu is not None:
                later, base = _nanmedian(vocu, 0), _nanmedian(decu, 0)  # a class traced in no network: NaN
                keep = np.isfinite(later) & np.isfinite(base) & np.isfinite(when)
                if keep.sum() < 5:
                    sparse[name] = f"{name} has {int(keep.sum())} classes traced in both protocols"
                early = [c for c in range(len(when)) if np.isfinite(later[c]) and when[c] > 0 and later[c] < when[c]]
                entry["a"] = {"vocu": later.tolist(), "decu": base.tolist(), "introduced": when.tolist(),
                              "classes": int(keep.sum()), "before_introduction": early}
                group = f"{arch.upper()} (a) on {dataset_name(dataset)}"
                test = (_partial_rank_test(when[keep], later[keep], base[keep], group, follows)
                        if keep.sum() >= 5 else None)
                if test is not None:
                    if early:
                        test.contradicted = (f"class{'es' * (len(early) > 1)} {_names([str(c) for c in early])} "
                                             "form before vocu introduces them")
                    tests.append(test)
                    texts.append(f"{arch.upper()} (a): vocu's formation order vs introduction given decu's, partial r = "
                                 f"{_f(test.estimate)} [{_f(test.low)}, {_f(test.high)}] over {int(keep.sum())} classes"
                                 + (f"; {test.contradicted}" if early else ""))
            else:
                sparse[name] = f"{name} lacks vocu or decu"
            first = {}
            for protocol in PAPER_PROTOCOLS:
                key = (dataset, arch, protocol)
                if key not in masked:
                    continue
                first[protocol] = _nanmedian(masked[key], 1)  # a network with nothing traced: NaN
                keep = np.isfinite(first[protocol])
                test = _rank_test(first[protocol][keep], np.asarray(long_accuracy[key], float)[keep],
                                  f"{condition_name(key)} (b)", strength)
                if test is not None:
                    tests.append(test)
                    texts.append(f"{condition_name(key, False)} (b): appearance vs long-delay accuracy, r = "
                                 f"{_f(-test.estimate)} [{_f(-test.high)}, {_f(-test.low)}] over {int(keep.sum())} networks")
            if len(first) == 2:
                a, b = (first[p][np.isfinite(first[p])] for p in PAPER_PROTOCOLS)
                if len(a) and len(b):
                    shift, low, high, _ = shift_ci(a, b)
                    earlier = "tie" if low <= 0 <= high else "decu" if high < 0 else "vocu"
                    entry["earlier"] = {"forms_earlier": earlier, "shift": shift, "ci95": [low, high]}
                    texts.append(f"{arch.upper()}: earlier-forming protocol {earlier}")
        keys = sorted(masked)
        premises = [*_solves({k: v for k, v in trained.items() if k[0] == dataset}, chance),
                    _finished(keys, plateau, scope.steps),
                    _premise("vocu and decu traced for at least 5 classes", sparse, "too few classes traced")]
        note = "; ".join(outside) + " (excluded)" if outside else ""
        parts[dataset] = {"tests": tests, "premises": premises, "note": note,
                          "statistic": "; ".join(texts + ([note] if note else [])) or "nothing traced"}
    return _verdict("C5", c5_formation_explains, parts, details, scope)


def c6_speed_penalty_helps(runs: dict, scope: Scope, dramatic: float = DRAMATIC, max_loss: float = 0.02,
                           chance: float = CHANCE) -> Verdict:
    """C6: regularising speed at the memories dramatically improves memory robustness.

    Rule: per (dataset, architecture, parent protocol), per seed, the parent, its control fine-tune
    (λ = 0) and its slowpoints fine-tune side by side. Robustness is retention: long-delay accuracy
    divided by trained-delay accuracy, so a long-delay gain that only follows a trained-delay gain is
    no gain in memory. The gain is the median over seeds of slowpoints minus control and of slowpoints
    minus parent in retention, each with its order-statistic 95% interval; the penalised network must
    beat both (the smaller bound counts), so a control damaged by fine-tuning cannot make an unchanged
    network look better. "Dramatic" is a retention gain of at least 0.10. A group cannot count when
    its trained-delay accuracy (slowpoints minus control) may have fallen by more than 0.02 (its lower
    bound below −0.02: retention can rise by forgetting the task), or when an anchor of its penalty
    lies on the clip boundary (no state of the network). Reproduced: the lower bound of the gain is at
    least 0.10 in every group. Partly: a gain (Holm over every group) in a group that can count. Not
    reproduced: the gain's upper bound below 0.10, or the trained-delay change's upper bound below
    −0.02 (memory bought with the task). Otherwise inconclusive. Premises: at least 5 seeds per group,
    both decu and vocu parents, and every parent solves the trained delays (relative to its dataset).
    Reported, deciding nothing: slowpoints minus centermass in long-delay accuracy (is the effect
    specific to slow points?).
    """
    datasets = _datasets(runs=runs)
    parts, details = {}, {}
    for dataset in datasets:
        keys = sorted(k for k in runs if k[0] == dataset)
        missing = {f"{a.upper()} on {dataset_name(dataset)}": f"{a.upper()} on {dataset_name(dataset)} lacks "
                   f"{_names(sorted(set(PAPER_PROTOCOLS) - {k[2] for k in keys if k[1] == a}))} parents"
                   for a in sorted({k[1] for k in keys}) if set(PAPER_PROTOCOLS) - {k[2] for k in keys if k[1] == a}}
        premises = [_premise(f"at least {MIN_NETWORKS} seeds per (architecture, parent)",
                             {condition_name(k): f"{condition_name(k)} has {len(runs[k]['slowpoints']['long'])} seeds"
                              for k in keys if len(runs[k]["slowpoints"]["long"]) < MIN_NETWORKS}, "too few seeds"),
                    _premise("both decu and vocu parents fine-tuned", missing, "a parent protocol missing"),
                    *_solves({k: runs[k]["parent"]["trained"] for k in keys}, chance)[1:]]
        tests, texts = [], []
        for key in keys:
            d = {mode: {m: np.asarray(v, float) for m, v in values.items()} for mode, values in runs[key].items()
                 if mode in ("parent", "control", "slowpoints")}
            with np.errstate(divide="ignore", invalid="ignore"):  # a network at 0 trained-delay accuracy: no retention
                retention = {mode: v["long"] / v["trained"] for mode, v in d.items()}
            vs_control = median_ci(retention["slowpoints"] - retention["control"])
            vs_parent = median_ci(retention["slowpoints"] - retention["parent"])
            cost = median_ci(d["slowpoints"]["trained"] - d["control"]["trained"])
            p = max(median_p(retention["slowpoints"] - retention["control"]),
                    median_p(retention["slowpoints"] - retention["parent"]))
            group = f"{key[1].upper()} ({key[2]} parents) on {dataset_name(dataset)}"
            anchored = float(runs[key]["anchors_in_region"])
            blocked = "; ".join(
                ([f"its trained-delay accuracy may have fallen by more than {max_loss} (change {_interval(cost)})"]
                 if cost[1] < -max_loss else [])
                + ([f"{1 - anchored:.0%} of its penalty's anchors lie on the clip boundary"] if anchored < 1 else []))
            against = f"trained-delay accuracy fell beyond −{max_loss} ({_interval(cost)})" if cost[2] < -max_loss else ""
            tests.append(Test(group, min(vs_control[0], vs_parent[0]), min(vs_control[1], vs_parent[1]),
                              min(vs_control[2], vs_parent[2]), p, dramatic, blocked=blocked, contradicted=against))
            long = {m: median_ci(d["slowpoints"]["long"] - d[m]["long"]) for m in ("control", "parent")}
            entry = {"seeds": len(d["slowpoints"]["long"]), "retention_vs_control": list(vs_control),
                     "retention_vs_parent": list(vs_parent), "vs_control": list(long["control"]),
                     "vs_parent": list(long["parent"]), "trained_change": list(cost), "anchors_in_region": anchored,
                     "control_vs_parent": list(median_ci(d["control"]["long"] - d["parent"]["long"]))}
            text = (f"{key[1].upper()} ({key[2]} parents), {entry['seeds']} seeds: retention vs control "
                    f"{_interval(vs_control)}, vs parent {_interval(vs_parent)}, trained-delay {_interval(cost)}")
            specific = runs[key].get("specificity")
            if specific and len(specific["slowpoints"]):
                over = median_ci(np.asarray(specific["slowpoints"], float) - np.asarray(specific["centermass"], float))
                entry["vs_centermass"] = list(over)
                text += (f"; long-delay vs centermass {_interval(over)} over {len(specific['slowpoints'])} seeds ("
                         + ("specific to slow points" if over[1] > 0 else "centermass does as well or better"
                            if over[2] <= 0 else "not shown specific to slow points") + ")")
            details[_key(key)] = entry
            texts.append(text)
        parts[dataset] = {"tests": tests, "premises": premises, "statistic": "; ".join(texts)}
    return _verdict("C6", c6_speed_penalty_helps, parts, details, scope)


RULES = {"C1": c1_equal_trained_accuracy, "C2": c2_protocols_differ, "C3": c3_slow_point_per_memory,
         "C4": c4_speed_predicts_memory, "C5": c5_formation_explains, "C6": c6_speed_penalty_helps}


def rule_text(claim: str) -> str:
    """The rule of ``claim`` as its docstring states it, then how its datasets combine (:func:`combine`),
    for a chapter to show before it runs."""
    if claim not in RULES:
        raise ValueError(f"claim {claim!r} must be one of {tuple(RULES)}")
    return _rule(RULES[claim]) + " " + COMBINATION


def scope_markdown(scope: Scope) -> str:
    s = scope
    text = (f"preset `{s.preset}`; datasets {', '.join(s.datasets)}; architectures "
            f"{', '.join(a.upper() for a in s.archs)}; {s.units} units; {s.steps} training steps; {s.model_form}; "
            f"{s.networks} networks" + (f" ({s.per_condition} per condition)" if s.per_condition else ""))
    text += f"; arithmetic {s.arithmetic}" if s.arithmetic else ""
    text += f"; search {s.search}" if s.search else ""
    text += f" ({s.search_iterations:,} reference-search iterations)" if s.search_iterations else ""
    return text + (f"; fine-tuning {s.finetune_steps:,} steps at λ = {s.lam:g}" if s.finetune_steps else "")


def premises_markdown(premises: list[dict]) -> str:
    return "; ".join(f"{p['premise']}: {'met' if p['met'] else 'unmet (' + ', '.join(p['failing']) + ')'}"
                     for p in premises)
