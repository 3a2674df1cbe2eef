"""A grid of conditions (architecture x protocol), each trained as one ensemble and evaluated, and the
full campaign of analyses on it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import store
from .engine import engine
from .evaluate import evaluate_run
from .formation import trace_run
from .presets import make_config
from .regularize import compare, finetune
from .slowpoints import analyse_run
from .stats import correlation_table, speed_memory_rows
from .train import train

DEFAULT_DELAYS = (4, 10, 20, 50, 100, 200, 500, 1000)


def run_grid(preset: str, archs, protocols, delays=DEFAULT_DELAYS, out: str | Path = "runs",
             progress: bool = True, scheduler: str | None = None, **overrides) -> list[dict]:
    """Train and evaluate every (arch, protocol) as tasks on ``scheduler`` (see :mod:`memrnn.engine`);
    cached runs and evaluations are reused."""
    out = Path(out).resolve()  # workers may start elsewhere
    with engine(scheduler, progress) as graph:
        grid = _submit_grid(graph, preset, archs, protocols, delays, out, overrides)
        evaluated = graph.gather([condition["evaluated"] for condition in grid])
    rows = [_grid_row(condition, section) for condition, section in zip(grid, evaluated)]
    store.write_json(out / f"grid-{_summary_name(preset, grid)}.json", rows)
    return rows


def _summary_name(preset: str, grid: list[dict]) -> str:
    """``preset-dataset``: grids of one preset on several datasets share a runs folder."""
    return f"{preset}-{grid[0]['config'].dataset}"


def _submit_grid(graph, preset, archs, protocols, delays, out: Path, overrides) -> list[dict]:
    """Per condition: train -> evaluate."""
    grid = []
    for arch in archs:
        for protocol in protocols:
            config = make_config(preset, arch=arch, protocol=protocol, **overrides)
            run = graph.submit(_train, config, out)
            grid.append({"config": config, "run": run, "evaluated": graph.submit(_evaluate, run, list(delays))})
    return grid


def _grid_row(condition: dict, section: dict) -> dict:
    config = condition["config"]
    summary = store.read_json(Path(section["run_dir"]) / store.SUMMARY_FILE)
    return {"run": Path(section["run_dir"]).name, "arch": config.arch, "protocol": config.protocol,
            "dataset": config.dataset, "trained_delay_accuracy": summary["train"]["trained_delay_accuracy"],
            "delays": section["delays"], "overall": section["overall"]}


# Tasks. Each writes into one run directory under its lock and returns that directory (or what it
# computed there); extra positional arguments are tasks that must finish first.

def _train(config, out: Path) -> str:
    return str(train(config, out, progress=False))


def _evaluate(run_dir: str, delays, *after) -> dict:
    with store.run_lock(run_dir):
        return {**evaluate_run(Path(run_dir), delays), "run_dir": run_dir}


def _slowpoints(run_dir: str, *after) -> str:
    with store.run_lock(run_dir):
        analyse_run(Path(run_dir))
    return run_dir


def _formation(run_dir: str) -> str:
    with store.run_lock(run_dir):
        trace_run(Path(run_dir))
    return run_dir


def _finetune(run_dir: str, mode: str) -> str:
    return str(finetune(Path(run_dir), mode=mode, progress=False))


def _compare(run_dir: str, children: list[dict], *after) -> list[dict]:
    return compare(Path(run_dir), [Path(child["run_dir"]) for child in children])


def _correlations(run_dirs: list[str], *after) -> list[dict]:
    return correlation_table(speed_memory_rows([Path(r) for r in run_dirs]))


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
                 modes=("control", "slowpoints", "centermass", "tar"), progress: bool = True,
                 scheduler: str | None = None, **overrides) -> dict:
    """Everything the book needs at a preset, as one task graph, resumable (each task is cached in the
    run store). Per condition: train -> evaluate and slow points -> formation, and slow points ->
    fine-tune in every mode -> evaluate each -> compare; over all conditions: speed vs memory."""
    out = Path(out).resolve()
    with engine(scheduler, progress) as graph:
        grid = _submit_grid(graph, preset, archs, protocols, delays, out, overrides)
        analysed, compared = [], []
        for condition in grid:
            # after evaluation: both write the run's summary, so they would only wait for each other's lock
            points = graph.submit(_slowpoints, condition["run"], condition["evaluated"])
            graph.submit(_formation, points)
            children = [graph.submit(_evaluate, graph.submit(_finetune, points, mode), list(delays)) for mode in modes]
            compared.append(graph.submit(_compare, points, children, condition["evaluated"]))
            analysed.append(points)
        correlations = graph.submit(_correlations, analysed, [condition["evaluated"] for condition in grid])
        evaluated, compared, correlations = graph.gather(
            [[condition["evaluated"] for condition in grid], compared, correlations])
    rows = [_grid_row(condition, section) for condition, section in zip(grid, evaluated)]
    store.write_json(out / f"grid-{_summary_name(preset, grid)}.json", rows)
    result = {"grid": rows, "correlations": correlations,
              "regularization": dict(zip([row["run"] for row in rows], compared))}
    store.write_json(out / f"campaign-{_summary_name(preset, grid)}.json", result)
    return result
