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
             progress: bool = True, scheduler: str | None = None, datasets=None, **overrides) -> list[dict]:
    """Train and evaluate every (arch, protocol), on each of ``datasets`` when given (else the preset's
    or the overrides' one), as tasks on ``scheduler`` (see :mod:`memrnn.engine`); cached runs and
    evaluations are reused. Rows run dataset by dataset, each in (arch, protocol) order."""
    out = Path(out).resolve()  # workers may start elsewhere
    if datasets is not None and "dataset" in overrides:
        raise ValueError("give datasets or dataset, not both")
    each = [{"dataset": d} for d in datasets] if datasets is not None else [{}]
    with engine(scheduler, progress) as graph:
        grids = [submit_grid(graph, preset, archs, protocols, delays, out, {**overrides, **d}) for d in each]
        evaluated = graph.gather([[condition["evaluated"] for condition in grid] for grid in grids])
    rows = []
    for grid, sections in zip(grids, evaluated):
        part = [grid_row(condition, section) for condition, section in zip(grid, sections)]
        store.write_json(out / f"grid-{_summary_name(preset, grid)}.json", part)
        rows += part
    return rows


def _summary_name(preset: str, grid: list[dict]) -> str:
    """``preset-dataset``: grids of one preset on several datasets share a runs folder."""
    return f"{preset}-{grid[0]['config'].dataset}"


def submit_grid(graph, preset, archs, protocols, delays, out: Path, overrides) -> list[dict]:
    """Per condition: train -> evaluate. Each condition: its config and the two tasks' futures."""
    grid = []
    for arch in archs:
        for protocol in protocols:
            config = make_config(preset, arch=arch, protocol=protocol, **overrides)
            run = graph.submit(_train, config, out)
            grid.append({"config": config, "run": run, "evaluated": graph.submit(_evaluate, run, list(delays))})
    return grid


def grid_row(condition: dict, section: dict) -> dict:
    """The grid summary's row of a condition, from its evaluation."""
    config = condition["config"]
    summary = store.read_summary(section["run_dir"])
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


def _slowpoints(run_dir: str, *after, **analysis) -> str:
    analyse_run(Path(run_dir), **analysis)
    return run_dir


def _formation(run_dir: str) -> str:
    with store.run_lock(run_dir):
        trace_run(Path(run_dir))
    return run_dir


def _finetune(run_dir: str, mode: str, **options) -> str:
    return str(finetune(Path(run_dir), mode, progress=False, **options))


def _compare(run_dir: str, children: list[dict], *after) -> list[dict]:
    return compare(Path(run_dir), [Path(child["run_dir"]) for child in children])


def _correlations(run_dirs: list[str], *after) -> list[dict]:
    return correlation_table(speed_memory_rows([Path(r) for r in run_dirs]))


def submit_finetunes(graph, parent, finetunes, delays, analysis: dict | None = None, after=()):
    """The parent's slow points (``analysis``: ``analyse_run``'s settings) -> each fine-tune (``finetunes``:
    keyword dicts of ``finetune``, anchored on that analysis) -> evaluate each -> compare with the parent.
    ``after``: tasks that must finish first (the parent's evaluation). Returns the futures of the slow
    points (the parent's directory, once analysed) and of the comparison."""
    analysis = analysis or {}
    points = graph.submit(_slowpoints, parent, *after, **analysis)
    children = [graph.submit(_evaluate, graph.submit(_finetune, points, **analysis, **options), list(delays))
                for options in finetunes]
    return points, graph.submit(_compare, points, children, *after)


def finetune_runs(parents, finetunes, delays=DEFAULT_DELAYS, progress: bool = True,
                  scheduler: str | None = None) -> list[list[dict]]:
    """Fine-tune trained runs as tasks on ``scheduler``: ``finetunes[i]`` lists the ``finetune`` keyword
    dicts for ``parents[i]`` (e.g. ``[{"mode": "control"}, {"mode": "slowpoints", "lam": 1e-3}]``); every
    parent and child is evaluated on ``delays``. Returns each parent's ``compare`` table, in order."""
    if len(parents) != len(finetunes):
        raise ValueError(f"one list of fine-tunes per parent: {len(parents)} parents, {len(finetunes)} lists")
    with engine(scheduler, progress) as graph:
        tables = []
        for parent, wanted in zip(parents, finetunes):
            parent = str(Path(parent).resolve())  # workers may start elsewhere
            evaluated = graph.submit(_evaluate, parent, list(delays))
            tables.append(submit_finetunes(graph, parent, wanted, delays, after=(evaluated,))[1])
        return graph.gather(tables)


def each_run(analysis, run_dirs, progress: bool = True, scheduler: str | None = None, **options) -> list:
    """``analysis(run_dir, **options)`` for every run as parallel tasks on ``scheduler`` (e.g.
    ``analyse_run``, ``trace_run``: each caches its result in the run); the results, in order."""
    with engine(scheduler, progress) as graph:
        return graph.gather([graph.submit(analysis, Path(run_dir).resolve(), **options) for run_dir in run_dirs])


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
        grid = submit_grid(graph, preset, archs, protocols, delays, out, overrides)
        analysed, compared = [], []
        for condition in grid:
            # after evaluation: both write the run's summary, so they would only wait for each other's lock
            points, table = submit_finetunes(graph, condition["run"], [{"mode": mode} for mode in modes], delays,
                                             after=(condition["evaluated"],))
            graph.submit(_formation, points)
            compared.append(table)
            analysed.append(points)
        correlations = graph.submit(_correlations, analysed, [condition["evaluated"] for condition in grid])
        evaluated, compared, correlations = graph.gather(
            [[condition["evaluated"] for condition in grid], compared, correlations])
    rows = [grid_row(condition, section) for condition, section in zip(grid, evaluated)]
    store.write_json(out / f"grid-{_summary_name(preset, grid)}.json", rows)
    result = {"grid": rows, "correlations": correlations,
              "regularization": dict(zip([row["run"] for row in rows], compared))}
    store.write_json(out / f"campaign-{_summary_name(preset, grid)}.json", result)
    return result
