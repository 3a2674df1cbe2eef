"""Which choices matter? Each of our own choices flipped alone away from the reference's model.

A *switch* is one configuration field set to its non-reference value (see
:data:`memrnn.presets.MODEL_FORM`, or the CIFAR-10 CNN's ``cnn``). Switches of the trained model (cell,
readout, init, cnn, loss, class sampling, Adam) train new networks with the same seeds, so every network is
paired with its reference twin (same initialisation stream and data stream); switches of the analysis (search,
centroids, speed metric) and of fine-tuning reuse the reference networks. For each switch we
measure, against the reference, the change in trained-delay and long-delay accuracy (paired
t-intervals over networks), in the speed-memory Spearman correlation (paired jackknife over
networks) and in the fine-tuning gain (slowpoints minus control long-delay accuracy, paired
t-interval over networks).

One more switch is not a model-form field: ``fast``, the bf16 fast path (:mod:`memrnn.fused` on a CPU).
It trains new networks with the same seeds like the others, and :func:`equivalent` decides, by two
one-sided tests, whether it may stand in for float32 training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from .campaign import grid_row, submit_finetunes, submit_grid
from .engine import engine
from .evidence import long_accuracy, trained_accuracy
from .presets import CNN_FORM, MODEL_FORM
from .slowpoints import analysis_name
from .stats import mean_ci, spearman_difference_ci, speed_memory_rows

TRAINING_FIELDS = ("cell", "readout", "init", "cnn", "loss", "class_sampling", "adam", "fast")
EQUIVALENCE_MARGIN = 0.03  # accuracy: a change smaller than this is too small to move any verdict
ANALYSIS_FIELDS = ("search", "centroids", "speed_metric")


@dataclass(frozen=True)
class Switch:
    field: str
    value: str | bool

    @property
    def label(self) -> str:
        return f"{self.field}={self.value}"

    @property
    def trains(self) -> bool:
        return self.field in TRAINING_FIELDS


def switches(fields=tuple(MODEL_FORM)) -> list[Switch]:
    """Every non-reference choice of the given fields (``cnn`` applies to CIFAR-10 only)."""
    choices = {**MODEL_FORM, **CNN_FORM}
    return [Switch(field, value) for field in fields for value in choices[field][1:]]


def measure(preset: str, arch: str, protocols, settings, runs: str | Path, delays, progress: bool = True,
            scheduler: str | None = None, **overrides) -> dict:
    """Train (or reuse) and analyse each setting: the reference (``None``) or one switch, all as one task
    graph on ``scheduler`` (see :mod:`memrnn.engine`; settings that share networks share their tasks).

    Returns, per setting, per-network arrays keyed by (protocol, seed): trained- and long-delay accuracy,
    the fine-tuning gain, and the (log speed, long-delay accuracy, unit) triples of the correlation."""
    out = Path(runs).resolve()
    with engine(scheduler, progress) as graph:
        submitted = [_submit_setting(graph, preset, arch, protocols, switch, out, delays, overrides)
                     for switch in settings]
        done = graph.gather([([c["evaluated"] for c in grid], tables) for grid, tables, _ in submitted])
    return {switch: _measures(out, grid, evaluated, tables, sections)
            for switch, (grid, _, sections), (evaluated, tables) in zip(settings, submitted, done)}


def _submit_setting(graph, preset, arch, protocols, switch: Switch | None, out: Path, delays, overrides):
    """Train -> evaluate, then slow points -> control and slowpoints fine-tunes -> compare, per protocol."""
    training = {switch.field: switch.value} if switch is not None and switch.trains else {}
    grid = submit_grid(graph, preset, [arch], protocols, delays, out, {**overrides, **training})
    analysis = {switch.field: switch.value} if switch is not None and switch.field in ANALYSIS_FIELDS else {}
    form = switch.value if switch is not None and switch.field == "finetune" else None
    tables, sections = [], []
    for condition in grid:
        config = condition["config"]
        settings = {"search": config.search, "centroids": config.centroids, "metric": config.speed_metric}
        settings.update({"metric" if k == "speed_metric" else k: v for k, v in analysis.items()})
        sections.append(analysis_name(config, settings["search"], settings["centroids"], settings["metric"]))
        # the anchors come from the same analysis (for the reference settings, the run's own)
        _, table = submit_finetunes(graph, condition["run"], [{"mode": m, "form": form} for m in ("control", "slowpoints")],
                                    delays, settings, after=(condition["evaluated"],))
        tables.append(table)
    return grid, tables, sections


def _measures(out: Path, grid, evaluated, tables, sections) -> dict:
    """One setting's per-network arrays, from its gathered evaluations and comparison tables."""
    rows = [grid_row(condition, section) for condition, section in zip(grid, evaluated)]
    run_dirs = [out / r["run"] for r in rows]
    gains = []
    for table in tables:
        by_mode = {r["mode"]: r for r in table}
        gains.append(np.subtract(by_mode["slowpoints"]["long"]["after_per_seed"],
                                 by_mode["control"]["long"]["after_per_seed"]))
    units = [(r["protocol"], seed) for r, condition in zip(rows, grid) for seed in condition["config"].member_seeds]
    speed_rows = [row for run_dir, section in zip(run_dirs, sections)
                  for row in speed_memory_rows([run_dir], section=section)]
    unit_index = {unit: i for i, unit in enumerate(units)}
    return {
        "units": units,
        "trained": np.concatenate(list(trained_accuracy(rows).values())),
        "long": np.concatenate(list(long_accuracy(rows).values())),
        "gain": np.concatenate(gains),
        "correlation": (np.array([r["log10_speed"] for r in speed_rows]),
                        np.array([r["long_delay_accuracy"] for r in speed_rows]),
                        np.array([unit_index[(r["protocol"], r["seed"])] for r in speed_rows])),
        "runs": [r["run"] for r in rows],
    }


def effect(reference: dict, switched: dict, switch: Switch) -> dict:
    """The switch's effect on each measure, paired by network: mean change and 95% interval."""
    if reference["units"] != switched["units"]:
        raise ValueError("the two settings must cover the same networks (protocols and seeds) to be paired")
    out = {"switch": switch.label, "trains": switch.trains, "runs": switched["runs"]}
    for measure_name in ("trained", "long", "gain"):
        if not switch.trains and measure_name != "gain":
            out[measure_name] = None  # the same networks: unchanged by construction
            continue
        differences = switched[measure_name] - reference[measure_name]
        change, low, high = mean_ci(differences)
        out[measure_name] = {"change": change, "ci95": [low, high], "per_network": differences.tolist(),
                             "reference": float(reference[measure_name].mean()),
                             "switched": float(switched[measure_name].mean())}
    out["correlation"] = spearman_difference_ci(reference["correlation"], switched["correlation"])
    return out


def matters(row: dict) -> list[str]:
    """The measures whose 95% interval of change excludes 0."""
    names = []
    for name in ("trained", "long", "gain"):
        value = row[name]
        if value is not None and (value["ci95"][0] > 0 or value["ci95"][1] < 0):
            names.append(name)
    low, high = row["correlation"]["ci95"]
    if low is not None and (low > 0 or high < 0):
        names.append("correlation")
    return names


def tost(differences, margin: float = EQUIVALENCE_MARGIN) -> float:
    """Two one-sided paired t-tests (TOST): the p-value that the mean of the paired ``differences`` lies
    inside (-margin, +margin)."""
    differences = np.asarray(differences, dtype=float)
    if len(differences) < 2:
        raise ValueError(f"an equivalence test needs at least 2 paired networks, got {len(differences)}")
    if np.ptp(differences) == 0:  # no spread: the t statistic is undefined, the answer is not
        return float(abs(differences[0]) >= margin)
    above = stats.ttest_1samp(differences, -margin, alternative="greater").pvalue
    below = stats.ttest_1samp(differences, margin, alternative="less").pvalue
    return float(max(above, below))


def equivalent(row: dict, measures=("trained", "long"), margin: float = EQUIVALENCE_MARGIN) -> dict[str, float]:
    """TOST per measure of a switch's row: a measure is equivalent at level 0.05 when its p-value is below it."""
    return {name: tost(row[name]["per_network"], margin) for name in measures}
