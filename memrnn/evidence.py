"""The claims' inputs gathered from run directories, so that chapters only call and print.

:mod:`memrnn.claims` judges plain arrays; this module reads them out of the run store (summaries,
slow-point tensors, formation traces, fine-tuned children) in the shapes the claims take, and builds
the :class:`~memrnn.claims.Scope` every verdict carries.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import store
from .claims import PAPER_PROTOCOLS, Scope
from .presets import Config, arithmetic
from .slowpoints import load_results

LONG_DELAY = 100  # long delays: evaluated delays >= this


def model_form_label(config: Config) -> str:
    """'reference model form', or the fields that differ from the reference's."""
    changed = [f"{field}={getattr(config, field)}" for field, choices in config.form_choices.items()
               if getattr(config, field) != choices[0]]
    return "reference model form" if not changed else "model form with " + ", ".join(changed)


def scope(config: Config, rows: list[dict], search: str = "", lam: float | None = None) -> Scope:
    """What the grid rows (from :func:`memrnn.campaign.run_grid`) cover: with a slow-point ``search``
    the reference search's iterations (when the runs use it), with a fine-tuning ``lam`` its steps."""
    networks = sum(len(r["trained_delay_accuracy"]) for r in rows)
    iterations = config.search_iterations if search and config.search == "reference" else 0
    conditions = len({condition(r) for r in rows}) or 1
    return Scope(config.preset, tuple(sorted({r["dataset"] for r in rows})), tuple(sorted({r["arch"] for r in rows})),
                 config.hidden_size, config.steps, model_form_label(config), networks, search, iterations,
                 config.finetune_steps if lam is not None else 0, lam or 0.0, networks // conditions,
                 arithmetic(config))


def plateau(steps: int, result: Path | None = None) -> dict:
    """{(dataset, arch, protocol): whether the learning curve judged the condition at its plateau} at the
    training length ``steps``, read from the learning curve's result file (default: the book's). Empty
    (every condition unknown, so the premise is unmet) when the curve has not judged that length against
    the next one, or was judged by the first rule, whose window could not see a plateau."""
    from .curve import RESULT, RULE

    path = Path(result or RESULT)
    if not path.exists():
        return {}
    summary = store.read_json(path, dict)
    if summary.get("rule") != RULE:
        return {}
    rungs = [r for r in summary["rungs"] if r["steps"] == steps and r["passed"] is not None]
    return {(c["dataset"], c["arch"], c["protocol"]): bool(c["plateau"]) for r in rungs for c in r["conditions"]}


def paper_rows(rows: list[dict]) -> list[dict]:
    """The grid rows of the protocols the paper trained (see :data:`memrnn.claims.PAPER_PROTOCOLS`)."""
    return [r for r in rows if r["protocol"] in PAPER_PROTOCOLS]


def condition(row: dict) -> tuple[str, str, str]:
    return row["dataset"], row["arch"], row["protocol"]


def once(rows: list[dict], key=condition) -> list[dict]:
    """``rows``, refusing a condition that appears twice: keeping one run of it would drop networks silently."""
    seen = {}
    for r in rows:
        seen.setdefault(key(r), []).append(r["run"])
    repeated = {k: v for k, v in seen.items() if len(v) > 1}
    if repeated:
        raise ValueError("repeated condition(s): " + "; ".join(f"{'/'.join(k)} in runs {', '.join(v)}"
                                                               for k, v in repeated.items())
                         + " (merge their networks into one condition, or pass one run per condition)")
    return rows


def trained_accuracy(rows: list[dict]) -> dict:
    """{(dataset, arch, protocol): trained-delay accuracy per network}."""
    return {condition(r): np.asarray(r["trained_delay_accuracy"], float) for r in once(rows)}


def long_accuracy(rows: list[dict], min_delay: int = LONG_DELAY) -> dict:
    """{(dataset, arch, protocol): accuracy per network, averaged over evaluated delays >= min_delay}."""
    out = {}
    for r in once(rows):
        long = [j for j, d in enumerate(r["delays"]) if d >= min_delay]
        if not long:
            raise ValueError(f"{r['run']}: no evaluated delay >= {min_delay} (have {r['delays']})")
        out[condition(r)] = np.asarray(r["overall"], float)[:, long].mean(1)
    return out


def slow_points(run_dirs, section: str = "slowpoints") -> dict:
    """One search's results over runs, stacked over networks, as
    :func:`memrnn.claims.c3_slow_point_per_memory` takes them: dataset (N,); speed, speed_visited (median
    speed of the states visited during the delay), decoded, in_region (not on the clip boundary), spread
    and moved (distance from the start centroid), all (N, K); points, a list of N arrays (K, S) (state
    sizes differ between architectures)."""
    parts = {"speed": [], "speed_visited": [], "decoded": [], "in_region": [], "spread": [], "moved": [], "dataset": []}
    points = []
    for run_dir in map(Path, run_dirs):
        summary = store.read_json(run_dir / store.SUMMARY_FILE, dict)
        found = summary.get(section)
        if found is None or "speed_visited" not in found:
            raise ValueError(f"{run_dir} has no {section!r} analysis with visited-state speeds: run "
                             "memrnn.slowpoints.analyse_run on it (again)")
        tensors = load_results(run_dir, found["file"])
        parts["speed"].append(found["speed"])
        parts["speed_visited"].append(found["speed_visited"])
        parts["decoded"].append(found["decoded_class"])
        parts["in_region"].append(found["in_region"])
        parts["spread"].append(found["centroid_spread"])
        parts["moved"].append((tensors["points"] - tensors["centroids"]).norm(dim=-1).numpy())
        parts["dataset"].append([summary["config"]["dataset"]] * len(found["speed"]))
        points.extend(tensors["points"].numpy())
    return {**{k: np.concatenate([np.asarray(v) for v in values]) for k, values in parts.items()}, "points": points}


def introduction_steps(events: list[dict], n_classes: int = 10) -> np.ndarray:
    """Step at which each class enters training: 0 unless a vocabulary curriculum adds it later."""
    steps = np.zeros(n_classes)
    active = n_classes
    changes = sorted((e["step"], e["value"]) for e in events if e["kind"] == "n_classes")
    if changes:
        active = min(n_classes, 2)  # the vocabulary curriculum starts from two classes
        steps[active:] = np.nan
        for step, value in changes:
            steps[active:value] = step
            active = value
    return steps


def formation(run_dirs, rows: list[dict], traces: dict, min_delay: int = LONG_DELAY) -> dict:
    """Inputs of :func:`memrnn.claims.c5_formation_explains` from formation traces ({run: formation.json})
    and grid rows, per (dataset, arch, protocol): readout-free appearance of each (network, class) point
    as a fraction of training (NaN where it was never traced), whether the final point it was traced
    from is inside the reachable region (as the trace recorded it), and
    long-delay accuracy per network; per (dataset, arch), the fraction of training at which vocu
    introduces each class."""
    long = long_accuracy(rows, min_delay)
    appears, introduced, accuracy, in_region = {}, {}, {}, {}
    for run_dir, row in zip(map(Path, run_dirs), once(rows)):
        trace = traces[row["run"]]
        summary = store.read_json(run_dir / store.SUMMARY_FILE, dict)
        steps = summary["train"]["steps"]
        first = np.array([[np.nan if s is None else s for s in member] for member in trace["appears_at_unread"]], float)
        key = condition(row)
        appears[key], accuracy[key] = first / steps, long[key]
        in_region[key] = np.asarray(trace["start_in_region"], bool)
        if row["protocol"] == "vocu":
            introduced[key[:2]] = introduction_steps(trace["curriculum_events"], first.shape[1]) / steps
    return {"appears": appears, "introduced": introduced, "long_accuracy": accuracy, "in_region": in_region}


def finetune_pairs(comparisons: dict, anchors_in_region: dict) -> dict:
    """Inputs of :func:`memrnn.claims.c6_speed_penalty_helps` from :func:`memrnn.regularize.compare`
    tables: {(dataset, arch, parent protocol): [table, ...]} (one table per parent ensemble; seeds are
    concatenated) -> per seed, paired, the long- and trained-delay accuracy of the parent, its control
    and its slowpoints fine-tune; the share of the slowpoints anchors inside the reachable region
    (``anchors_in_region``: {same key: in_region (N, K) of the parents' analysis the anchors came from});
    and, over the tables that have a centermass fine-tune, the long-delay accuracy of slowpoints and
    centermass."""
    missing = sorted(set(comparisons) - set(anchors_in_region))
    if missing:
        raise ValueError(f"anchors_in_region lacks {['/'.join(k) for k in missing]}")
    out = {}
    for key, tables in comparisons.items():
        values = {mode: {"long": [], "trained": []} for mode in ("parent", "control", "slowpoints")}
        specificity = {"slowpoints": [], "centermass": []}
        for table in tables:
            by_mode = {r["mode"]: r for r in table}
            for measure in ("long", "trained"):
                control = by_mode["control"][measure]
                values["parent"][measure].extend(np.subtract(control["after_per_seed"], control["per_seed"]))
                for mode in ("control", "slowpoints"):
                    values[mode][measure].extend(by_mode[mode][measure]["after_per_seed"])
            if "centermass" in by_mode:
                for mode in specificity:
                    specificity[mode].extend(by_mode[mode]["long"]["after_per_seed"])
        out[key] = {**{mode: {m: np.asarray(v, float) for m, v in d.items()} for mode, d in values.items()},
                    "anchors_in_region": float(np.mean(anchors_in_region[key])),
                    "specificity": {m: np.asarray(v, float) for m, v in specificity.items()}}
    return out
