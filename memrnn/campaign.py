"""A grid of conditions (architecture x protocol), each trained as one ensemble and evaluated, and the
full campaign of analyses on it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import store
from .evaluate import evaluate_run
from .formation import trace_run
from .presets import make_config
from .regularize import compare, finetune
from .slowpoints import analyse_run
from .stats import correlation_table, speed_memory_rows
from .train import train

DEFAULT_DELAYS = (4, 10, 20, 50, 100, 200, 500, 1000)


def run_grid(preset: str, archs, protocols, delays=DEFAULT_DELAYS, out: str | Path = "runs",
             progress: bool = True, **overrides) -> list[dict]:
    """Train and evaluate every (arch, protocol); cached runs and evaluations are reused."""
    rows = []
    for arch in archs:
        for protocol in protocols:
            config = make_config(preset, arch=arch, protocol=protocol, **overrides)
            run_dir = train(config, out, progress=progress)
            summary = store.read_json(run_dir / store.SUMMARY_FILE)
            done = evaluate_run(run_dir, delays)
            rows.append({"run": run_dir.name, "arch": arch, "protocol": protocol, "dataset": config.dataset,
                         "trained_delay_accuracy": summary["train"]["trained_delay_accuracy"],
                         "delays": done["delays"], "overall": done["overall"]})
    store.write_json(Path(out) / f"grid-{preset}.json", rows)
    return rows


def format_table(rows: list[dict]) -> str:
    """Mean (and across-seed sd) accuracy per condition: trained delays, then each probe delay."""
    delays = rows[0]["delays"]
    head = f"{'condition':<24}{'trained':>14}" + "".join(f"{'d=' + str(d):>8}" for d in delays)
    lines = [head]
    for row in rows:
        trained = np.asarray(row["trained_delay_accuracy"])
        by_delay = np.asarray(row["overall"]).mean(0)
        lines.append(f"{row['dataset'] + '/' + row['arch'] + '/' + row['protocol']:<24}"
                     f"{trained.mean():>8.3f}±{trained.std(ddof=1) if len(trained) > 1 else 0:.3f}"
                     + "".join(f"{a:>8.3f}" for a in by_delay))
    return "\n".join(lines)


def run_campaign(preset: str, archs, protocols, delays=DEFAULT_DELAYS, out: str | Path = "runs",
                 modes=("control", "slowpoints", "centermass", "tar"), progress: bool = True, **overrides) -> dict:
    """Everything the book needs at a preset, resumable (each stage is cached): the grid, slow points
    and their formation for every run, and every fine-tuning mode for every run."""
    rows = run_grid(preset, archs, protocols, delays, out, progress, **overrides)
    run_dirs = [Path(out) / row["run"] for row in rows]
    regularization = {}
    for run_dir in run_dirs:
        analyse_run(run_dir)
        trace_run(run_dir)
        children = [finetune(run_dir, mode, progress=progress) for mode in modes]
        for child in children:
            evaluate_run(child, delays)
        regularization[run_dir.name] = compare(run_dir, children)
    result = {"grid": rows, "correlations": correlation_table(speed_memory_rows(run_dirs)),
              "regularization": regularization}
    store.write_json(Path(out) / f"campaign-{preset}.json", result)
    return result
