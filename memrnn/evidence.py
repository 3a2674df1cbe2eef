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
from .presets import MODEL_FORM, Config
from .slowpoints import load_results

LONG_DELAY = 100  # long delays: evaluated delays >= this


def model_form_label(config: Config) -> str:
    """'reference model form', or the fields that differ from the reference's."""
    changed = [f"{field}={getattr(config, field)}" for field, choices in MODEL_FORM.items()
               if getattr(config, field) != choices[0]]
    return "reference model form" if not changed else "model form with " + ", ".join(changed)


def scope(config: Config, rows: list[dict], search: str = "") -> Scope:
    """What the grid rows (from :func:`memrnn.campaign.run_grid`) cover."""
    networks = sum(len(r["trained_delay_accuracy"]) for r in rows)
    return Scope(config.preset, tuple(sorted({r["dataset"] for r in rows})), tuple(sorted({r["arch"] for r in rows})),
                 config.hidden_size, config.steps, model_form_label(config), networks, search)


def paper_rows(rows: list[dict]) -> list[dict]:
    """The grid rows of the protocols the paper trained (see :data:`memrnn.claims.PAPER_PROTOCOLS`)."""
    return [r for r in rows if r["protocol"] in PAPER_PROTOCOLS]


def condition(row: dict) -> tuple[str, str, str]:
    return row["dataset"], row["arch"], row["protocol"]


def trained_accuracy(rows: list[dict]) -> dict:
    """{(dataset, arch, protocol): trained-delay accuracy per network}."""
    return {condition(r): np.asarray(r["trained_delay_accuracy"], float) for r in rows}


def long_accuracy(rows: list[dict], min_delay: int = LONG_DELAY) -> dict:
    """{(dataset, arch, protocol): accuracy per network, averaged over evaluated delays >= min_delay}."""
    out = {}
    for r in rows:
        long = [j for j, d in enumerate(r["delays"]) if d >= min_delay]
        if not long:
            raise ValueError(f"{r['run']}: no evaluated delay >= {min_delay} (have {r['delays']})")
        out[condition(r)] = np.asarray(r["overall"], float)[:, long].mean(1)
    return out


def slow_points(run_dirs, section: str = "slowpoints") -> dict:
    """One search's results over runs, stacked over networks: speed, speed_at_centroid, decoded,
    spread (N, K), and points, a list of N arrays (K, S) (state sizes differ between architectures),
    as :func:`memrnn.claims.c3_slow_point_per_memory` takes them."""
    parts = {"speed": [], "speed_at_centroid": [], "decoded": [], "spread": [], "points": []}
    for run_dir in map(Path, run_dirs):
        found = store.read_json(run_dir / store.SUMMARY_FILE, dict).get(section)
        if found is None:
            raise ValueError(f"{run_dir} has no {section!r} analysis: run memrnn.slowpoints.analyse_run on it first")
        parts["speed"].append(found["speed"])
        parts["speed_at_centroid"].append(found["speed_at_centroid"])
        parts["decoded"].append(found["decoded_class"])
        parts["spread"].append(found["centroid_spread"])
        parts["points"].extend(load_results(run_dir, found["file"])["points"].numpy())
    points = parts.pop("points")
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
    and grid rows: readout-free appearance and introduction steps (N, K) over vocu networks; and, per
    (arch, protocol), each network's median appearance as a fraction of training and its long-delay
    accuracy."""
    long = long_accuracy(rows, min_delay)
    appears, introduced, fraction, accuracy = [], [], {}, {}
    for run_dir, row in zip(map(Path, run_dirs), rows):
        trace = traces[row["run"]]
        steps = store.read_json(run_dir / store.SUMMARY_FILE, dict)["train"]["steps"]
        first = np.array([[np.nan if s is None else s for s in member] for member in trace["appears_at_unread"]], float)
        key = (row["arch"], row["protocol"])
        fraction[key] = np.nanmedian(np.where(np.isnan(first), steps, first), axis=1) / steps
        accuracy[key] = long[condition(row)]
        if row["protocol"] == "vocu":
            appears.append(first)
            introduced.append(np.broadcast_to(introduction_steps(trace["curriculum_events"]), first.shape))
    if not appears:
        return {"appears": np.zeros((0, 10)), "introduced": np.zeros((0, 10)), "appearance_fraction": fraction,
                "long_accuracy": accuracy}
    return {"appears": np.concatenate(appears), "introduced": np.concatenate(introduced),
            "appearance_fraction": fraction, "long_accuracy": accuracy}


def finetune_pairs(comparisons: dict) -> dict:
    """Inputs of :func:`memrnn.claims.c6_speed_penalty_helps` from :func:`memrnn.regularize.compare`
    tables: {(arch, parent protocol): [table, ...]} (one table per parent ensemble; seeds are
    concatenated) -> per-seed long- and trained-delay accuracy of slowpoints and control, paired."""
    pairs = {}
    for key, tables in comparisons.items():
        values = {name: [] for name in ("long_slowpoints", "long_control", "trained_slowpoints", "trained_control")}
        for table in tables:
            by_mode = {r["mode"]: r for r in table}
            for measure in ("long", "trained"):
                for mode in ("slowpoints", "control"):
                    values[f"{measure}_{mode}"].extend(by_mode[mode][measure]["after_per_seed"])
        pairs[key] = {k: np.asarray(v, float) for k, v in values.items()}
    return pairs
