"""Does slow-point speed predict how long a memory lasts? Correlations with confidence intervals.

One observation per (network, class): the speed at the slow point found from that class's
centroid, and that class's accuracy at long delays (mean over the evaluated delays >=
``min_delay``). Correlations are between log10 speed and accuracy. Observations of one network
are not independent, so confidence intervals come from a bootstrap that resamples networks
(all classes of a network together).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats

from . import store

SPEED_FLOOR = 1e-15  # speeds below this (exact fixed points) are taken as the floor on the log scale


def speed_memory_rows(run_dirs, min_delay: int = 100) -> list[dict]:
    """One row per (run, member, class) with speed and long-delay accuracy."""
    rows = []
    for run_dir in run_dirs:
        summary = store.read_json(Path(run_dir) / store.SUMMARY_FILE)
        for needed, command in (("extrapolation", "evaluate"), ("slowpoints", "slowpoints")):
            if needed not in summary:
                raise ValueError(f"{run_dir} has no {needed} results: run `memrnn {command} {run_dir}` first")
        ex, sp, config = summary["extrapolation"], summary["slowpoints"], summary["config"]
        used = {"training": summary["train"]["steps"], "evaluate": ex.get("checkpoint_step"),
                "slowpoints": sp.get("checkpoint_step")}
        if len(set(used.values())) > 1:
            raise ValueError(f"{run_dir} mixes checkpoints (final step and the step each result came from: "
                             f"{used}): rerun `memrnn evaluate {run_dir}` and `memrnn slowpoints {run_dir}`")
        long = [j for j, d in enumerate(ex["delays"]) if d >= min_delay]
        if not long:
            raise ValueError(f"{run_dir}: no evaluated delay >= {min_delay} (have {ex['delays']})")
        accuracy = np.asarray(ex["accuracy"])[:, long].mean(1)  # (member, class)
        for m, seed in enumerate(sp["member_seeds"]):
            for c, speed in enumerate(sp["speed"][m]):
                rows.append({"run": summary["run"], "dataset": config["dataset"], "arch": config["arch"],
                             "protocol": config["protocol"], "seed": seed, "class": c,
                             "speed": speed, "log10_speed": float(np.log10(max(speed, SPEED_FLOOR))),
                             "long_delay_accuracy": float(accuracy[m, c]),
                             "decodes_own_class": sp["decoded_class"][m][c] == c,
                             "in_region": sp["in_region"][m][c]})
    return rows


def correlate(rows: list[dict], n_resamples: int = 2000, seed: int = 0) -> dict:
    """Spearman and Pearson correlation of log10 speed vs long-delay accuracy, with 95% CIs."""
    x = np.array([r["log10_speed"] for r in rows])
    y = np.array([r["long_delay_accuracy"] for r in rows])
    networks = np.unique([f"{r['run']}/{r['seed']}" for r in rows], return_inverse=True)[1]
    out = {"n": len(rows), "networks": int(networks.max() + 1) if len(rows) else 0}
    for name, fn in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        if len(rows) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            out[name] = {"r": None, "p": None, "ci95": [None, None]}
            continue
        result = fn(x, y)
        low, high = _network_bootstrap(x, y, networks, fn, n_resamples, seed)
        out[name] = {"r": float(result.statistic), "p": float(result.pvalue), "ci95": [low, high]}
    return out


def _network_bootstrap(x, y, networks, fn, n_resamples, seed):
    groups = [np.flatnonzero(networks == k) for k in range(networks.max() + 1)]

    def statistic(chosen):
        index = np.concatenate([groups[int(k)] for k in chosen])
        if np.ptp(x[index]) == 0 or np.ptp(y[index]) == 0:
            return np.nan
        return fn(x[index], y[index]).statistic

    if len(groups) < 2:
        return None, None
    result = stats.bootstrap((np.arange(len(groups)),), statistic, n_resamples=n_resamples, vectorized=False,
                             method="percentile", random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return (None, None) if np.isnan(low) else (float(low), float(high))


def correlation_table(rows: list[dict], by=("dataset", "arch", "protocol"), **kwargs) -> list[dict]:
    """Pooled correlation, then one per condition."""
    table = [{"condition": "pooled", **correlate(rows, **kwargs)}]
    for key in sorted({tuple(r[k] for k in by) for r in rows}):
        subset = [r for r in rows if tuple(r[k] for k in by) == key]
        table.append({"condition": "/".join(key), **correlate(subset, **kwargs)})
    return table


def format_correlations(table: list[dict]) -> str:
    def fmt(v):
        return "   n/a" if v is None else f"{v:+.2f}"

    lines = [f"{'condition':<26}{'n':>5}{'nets':>5}  {'spearman [95% CI]':<26}{'pearson [95% CI]':<26}"]
    for row in table:
        cells = []
        for name in ("spearman", "pearson"):
            s = row[name]
            cells.append(f"{fmt(s['r'])} [{fmt(s['ci95'][0])}, {fmt(s['ci95'][1])}]".ljust(26))
        lines.append(f"{row['condition']:<26}{row['n']:>5}{row['networks']:>5}  " + "".join(cells))
    return "\n".join(lines)
