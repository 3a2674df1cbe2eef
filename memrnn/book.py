"""The book: chapters as percent-format scripts in book/src, executed by papermill, rendered by Jupyter Book.

``run`` turns each source into a notebook (jupytext), writes the parameter values into its
parameters cell (so the page shows what ran, with no papermill injected cell), executes it with
papermill at a preset, stamps the notebook with a hash of its code (so a test can tell when a
chapter's code has drifted from what was executed) and writes it to book/. ``build`` renders the
executed notebooks to HTML without executing anything. The chapters' own helpers (recording a
verdict, saying what ran) are in :mod:`memrnn.chapter`; the scorecard reads the verdicts back.
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import confine, store
from .claims import RULES
from .content import check_notebook
from .display import CLAIM_CHAPTERS, write_summary
from .engine import environment, shared_cluster
from .presets import CPU_SECONDS_PER_NETWORK_STEP, PRESETS
from .progress import PROGRESS_ENV, ProgressBars

CHAPTERS = ("01_task", "02_extrapolation", "03_slowpoints", "04_speed_predicts_memory", "05_formation",
            "06_regularization", "07_beyond", "08_choices", "09_own_network", "scorecard")


def source_notebook(path: Path):
    import jupytext

    return jupytext.read(path)


def code_hash(notebook) -> str:
    """Hash of the chapter's own code cells (papermill's injected parameters excluded)."""
    cells = [c.source for c in notebook.cells
             if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
# Colab reads these to open the notebook on a GPU runtime
COLAB_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}


def set_parameters(notebook, parameters: dict) -> None:
    """Write ``parameters`` into the cell tagged ``parameters``, keeping each line's annotation and comment.
    Names the chapter does not take are ignored (one ``--set`` serves chapters with different parameters)."""
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.split("\n")
    for node in ast.parse(cell.source).body:
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
        if target.id in parameters:
            line, value = node.value.lineno - 1, node.value
            text = lines[line]
            new = parameters[target.id]
            # strings in double quotes, as the sources write them, so default values leave the cell unchanged
            literal = json.dumps(new) if isinstance(new, str) else repr(new)
            rest = text[value.end_col_offset:]
            if rest.lstrip().startswith("#"):  # keep the comment in its column
                gap = len(rest) - len(rest.lstrip()) + (value.end_col_offset - value.col_offset) - len(literal)
                rest = " " * max(gap, 2) + rest.lstrip()
            lines[line] = text[:value.col_offset] + literal + rest
    cell.source = "\n".join(lines)


def chapter_parameters(root: Path, chapters) -> dict[str, type]:
    """The names the ``parameters`` cells of ``chapters`` take, each with the type it is annotated with."""
    names = {}
    for name in chapters:
        cell = next(c for c in source_notebook(Path(root) / "book" / "src" / f"{name}.py").cells
                    if "parameters" in c.metadata.get("tags", []))
        for node in ast.parse(cell.source).body:
            annotation = getattr(getattr(node, "annotation", None), "id", None)
            names.setdefault((node.target if isinstance(node, ast.AnnAssign) else node.targets[0]).id,
                             {"int": int, "float": float, "str": str}.get(annotation, object))
    return names


def typed_parameter(key: str, value, kind: type):
    """A chapter parameter as the type its cell declares (text from the command line converted), or
    an error naming it as given: a number must be finite, text where text is declared."""
    given = value
    if kind in (int, float) and isinstance(value, str):
        try:
            value = kind(value)
        except ValueError:
            pass
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is float and number and not isinstance(value, float):
        value = float(value)
    if kind is not object and not isinstance(value, kind) or (number and not math.isfinite(value)):
        what = {int: "an integer", float: "a finite number", str: "text"}.get(kind, "a finite number or text")
        raise ValueError(f"chapter parameter {key}={given!r} is not allowed: it takes {what}")
    return value


def run(root: Path, preset: str, chapters=None, parameters: dict | None = None, output_dir: Path | None = None,
        progress: bool = True) -> list[Path]:
    """Execute chapters at ``preset`` (in order) and write the executed notebooks, all on one Dask cluster
    (see :func:`memrnn.engine.shared_cluster`). A chapter's notebook is replaced only when its execution
    succeeds and what it shows passes :func:`memrnn.content.check_notebook`; a parameter no chapter
    takes (a typo) is refused before anything runs."""
    root = Path(root)
    chapters = list(chapters or CHAPTERS)
    unknown = [c for c in chapters if c not in CHAPTERS]
    if unknown:
        raise ValueError(f"unknown chapter(s) {unknown}; choose from {CHAPTERS}")
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} is not allowed: choose one of {', '.join(PRESETS)}")
    kinds = {**chapter_parameters(root, chapters), "scheduler": str}
    stray = sorted(set(parameters or {}) - set(kinds))
    if stray:
        raise ValueError(f"unknown chapter parameter(s) {stray}; the chapters run take {sorted(kinds)}")
    parameters = {k: typed_parameter(k, v, kinds[k]) for k, v in (parameters or {}).items()}
    from .chapter import arithmetic_overrides  # chapter imports this module

    arithmetic_overrides(parameters.get("arithmetic", ""))  # a bad arithmetic is refused before hours of execution
    if parameters.get("preset", preset) != preset:
        raise ValueError(f"preset is given twice with different values ({preset!r} and {parameters['preset']!r} by "
                         "--set preset=...): give it once")
    output_dir = Path(output_dir or root / "book")
    output_dir.mkdir(parents=True, exist_ok=True)
    runs_dir = runs_folder(root, parameters)
    if progress:
        print(estimate(output_dir / TIMINGS_FILE, preset, chapters, runs_dir, parameters), flush=True)
    # the kernels and the cluster's workers inherit the folder where training reports its progress
    with tempfile.TemporaryDirectory(prefix="memrnn-book-") as reports, environment(PROGRESS_ENV, reports), \
            shared_cluster((parameters or {}).get("scheduler") or None) as address:
        if progress and address:
            print(f"one Dask cluster for every chapter: {address}", flush=True)
        return _run_chapters(root, preset, chapters, parameters, output_dir, runs_dir, progress, reports)


def runs_folder(root: Path, parameters: dict | None = None) -> Path:
    """The runs folder the chapters use, given their parameters."""
    return Path(root) / "book" / (parameters or {}).get("runs", DEFAULT_RUNS)


TIMINGS_FILE = "timings.json"  # per preset, each chapter's seconds in the last execution of each kind


def run_names(runs_dir: Path) -> set[str]:
    """The trained (or training) runs in a runs folder."""
    return {p.name for p in Path(runs_dir).iterdir() if (p / store.CONFIG_FILE).exists()} \
        if Path(runs_dir).is_dir() else set()


def record_timing(path: Path, preset: str, chapter: str, seconds: float, kind: str) -> None:
    """Keep a chapter's execution time: ``kind`` "from_empty" (its book execution began with an empty runs
    folder) or "cached" (it trained nothing)."""
    timings = store.read_json(path, dict) if Path(path).exists() else {}
    timings.setdefault(preset, {}).setdefault(kind, {})[chapter] = round(seconds, 1)
    timings[preset].setdefault(MACHINE_KEY, {})[kind] = machine()
    store.write_json(path, timings)


def record_fresh_time(path: Path, preset: str, seconds: float) -> None:
    """Keep what a book execution of every chapter from an empty runs folder took, HTML build included
    (``make book`` from a fresh clone: .venv set-up too): the estimate printed before such a run."""
    timings = store.read_json(path, dict) if Path(path).exists() else {}
    timings.setdefault(preset, {})[FRESH_KEY] = round(seconds, 1)
    timings[preset].setdefault(MACHINE_KEY, {})[FRESH_KEY] = machine()
    store.write_json(path, timings)


def machine() -> str:
    """What a recorded time was measured on: the GPU, or the CPU cores and how they execute bf16."""
    import torch

    from . import bf16

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{os.cpu_count()} CPU cores, {bf16.describe()}"


FRESH_KEY = "fresh_make_book_seconds"
MACHINE_KEY = "measured_on"  # {kind: machine} of the times recorded last
GRID_CHAPTERS = ("01_task", "02_extrapolation", "03_slowpoints", "04_speed_predicts_memory")


def estimate(path: Path, preset: str, chapters, runs_dir: Path, parameters: dict | None = None) -> str:
    """The estimate printed before a book execution starts: measured times where ``path`` (timings.json)
    has them for this case, otherwise a lower bound computed from the networks still to train, labelled so."""
    timings = (store.read_json(path, dict) if Path(path).exists() else {}).get(preset, {})
    found = len(run_names(runs_dir))
    where = "book/timings.json, measured on the machine that executed the committed book"
    if not found and FRESH_KEY in timings and set(chapters) == set(CHAPTERS):
        text = (f"{_minutes(timings[FRESH_KEY])} from an empty runs folder, as measured for `make book` from a fresh "
                f"clone ({where}; .venv set-up and HTML build included)")
    else:
        kind, words = ("cached", "with no network to train") if found else ("from_empty", "from an empty runs folder")
        known = [timings.get(kind, {}).get(c) for c in chapters]
        # a partial sum would understate: say so rather than add up what is known
        parts = [f"{_minutes(sum(known))} {words}, measured ({where})" if None not in known
                 else f"{words}: not measured"]
        networks, seconds = _grid_to_train(preset, runs_dir, parameters or {}) \
            if (found or None in known) and set(chapters) & set(GRID_CHAPTERS) else (0, 0.0)
        if networks:
            parts.append(f"estimated instead: at least {_minutes(seconds)} to train the {networks} networks still "
                         f"missing from the grid that chapters 01-04 share ({CPU_SECONDS_PER_NETWORK_STEP:.3f} s per "
                         f"network-step on two CPU cores), plus what the chapters train and compute besides")
        text = "; ".join(parts)
    return (f"Estimate for {len(chapters)} chapter(s) at {preset}: {text}. "
            f"The runs folder {runs_dir} holds {found} run(s) now.")


def _grid_to_train(preset: str, runs_dir: Path, parameters: dict) -> tuple[int, float]:
    """(networks, seconds on two CPU cores) of the grid chapters 01-04 share (their default architectures,
    protocols and arithmetic, or those given as chapter parameters) that ``runs_dir`` lacks."""
    from .chapter import arithmetic_overrides
    from .presets import book_datasets, cpu_seconds, make_config

    arithmetic = arithmetic_overrides(parameters.get("arithmetic", ""))
    configs = [make_config(preset, arch=a, protocol=p, dataset=d, seeds=parameters.get("seeds") or None, **arithmetic)
               for d in book_datasets(preset, parameters.get("datasets", ""))
               for a in parameters.get("archs", "gru,lstm").split(",")
               for p in parameters.get("protocols", "decu,vocu").split(",")]
    missing = [c for c in configs if not (Path(runs_dir) / store.run_name(c) / store.SUMMARY_FILE).exists()]
    return (sum(c.seeds for c in missing),
            cpu_seconds(missing))


def _run_chapters(root: Path, preset: str, chapters: list[str], parameters: dict | None, output_dir: Path,
                  runs_dir: Path, progress: bool, reports: str) -> list[Path]:
    import nbformat
    import papermill

    written = []
    began = time.perf_counter()
    from_empty = not run_names(runs_dir)
    for i, name in enumerate(chapters, 1):
        start = time.perf_counter()
        runs_before = run_names(runs_dir)
        if progress:
            print(f"[{i}/{len(chapters)}] {name} at preset {preset}, started {time.strftime('%H:%M:%S')}", flush=True)
        notebook = source_notebook(root / "book" / "src" / f"{name}.py")
        notebook.metadata.update(kernelspec=KERNELSPEC, **COLAB_METADATA)
        values = {"preset": preset, **(parameters or {})}
        set_parameters(notebook, values)
        # never written through a link, nor a link replaced
        source, target, partial = (confine.writable(output_dir, f) for f in
                                   (f".{name}.source.ipynb", f"{name}.ipynb", f".{name}.partial.ipynb"))
        nbformat.write(notebook, source)
        # the chapter's kernel inherits these (record_verdict stamps verdicts with the code that made
        # them); put back afterwards, so nothing run later in this process is taken for the chapter
        stamp = {"MEMRNN_CHAPTER": name, "MEMRNN_CHAPTER_SHA256": code_hash(notebook)}
        before = {key: os.environ.get(key) for key in stamp}
        os.environ.update(stamp)
        # no parameters passed: papermill then injects no cell, the parameters cell already holds the values
        try:  # papermill writes the notebook as it goes, failed or not: never over the committed one
            # the kernel is killed, not asked, to stop: a kernel busy in a cell ignores the request, and
            # Ctrl-C would wait 5 s for it; its process group goes with it
            with ProgressBars(reports, enabled=progress):  # below papermill's bar of cells
                executed = papermill.execute_notebook(str(source), str(partial), cwd=str(root / "book"),
                                                      kernel_name="python3", progress_bar=progress, log_output=False,
                                                      shutdown_kernel="immediate")
        except papermill.PapermillExecutionError as e:
            raise RuntimeError(f"chapter {name} failed ({e.ename}: {e.evalue}); {target.name} is unchanged, the "
                               f"failed execution is in {partial}") from None
        except (KeyboardInterrupt, SystemExit):  # stopped: no half-executed notebook is left
            partial.unlink(missing_ok=True)
            raise
        finally:
            source.unlink()
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key)
                else:
                    os.environ[key] = value
        executed.metadata["memrnn"] = {"preset": preset, "parameters": values, "code_sha256": code_hash(executed)}
        nbformat.write(executed, partial)
        problems = check_notebook(executed)
        if problems:
            raise RuntimeError(f"chapter {name} ran but shows what a reader must not see: " + "; ".join(problems)
                               + f". {target.name} is unchanged, the execution is in {partial}")
        os.replace(partial, target)
        if name in CLAIM_CHAPTERS.values():  # the scorecard and the landing page read the summary
            write_summary(output_dir, read_verdicts(runs_dir))
        seconds = time.perf_counter() - start
        if from_empty:
            record_timing(output_dir / TIMINGS_FILE, preset, name, seconds, "from_empty")
        elif run_names(runs_dir) <= runs_before:
            record_timing(output_dir / TIMINGS_FILE, preset, name, seconds, "cached")
        written.append(target)
        if progress:
            print(f"[{i}/{len(chapters)}] {name} done in {_minutes(seconds)}", flush=True)
    if progress:
        print(f"{len(chapters)} chapter(s) in {_minutes(time.perf_counter() - began)}", flush=True)
    return written


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def build(root: Path, strict: bool = True) -> Path:
    """Render the book to HTML from the stored outputs; returns the HTML folder."""
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root)]
    if strict:
        command.append("-W")
    subprocess.run(command, check=True)
    return Path(root) / "_build" / "html"


def stale_reason(record: dict, code_sha256: str, parameters: dict | None = None) -> str | None:
    """Why a recorded verdict does not come from the chapter's committed execution, or None if it does.
    The code hash covers the parameters cell, so ``parameters`` need only be given for verdicts
    recorded outside :func:`run`."""
    if record.get("code_sha256") != code_sha256:
        return "recorded by other chapter code"
    if parameters is not None and record.get("parameters") != parameters:
        return "recorded with other parameters"
    return None


def stale_verdicts(runs_dir: Path, book_dir: Path = Path(".")) -> dict[str, str]:
    """{claim: why} for every recorded verdict that the committed execution of its chapter (the
    notebook next to this one, stamped by :func:`run`) did not produce."""
    import nbformat

    stale = {}
    for record in read_verdicts(runs_dir):
        chapter = record.get("chapter")
        path = Path(book_dir) / f"{chapter}.ipynb"
        if not chapter or not path.exists():
            stale[record["claim"]] = "recorded outside `memrnn book run`"
            continue
        stamp = nbformat.read(path, as_version=4).metadata.get("memrnn", {})
        why = stale_reason(record, stamp.get("code_sha256"))
        if why or record.get("preset") != stamp.get("preset"):
            stale[record["claim"]] = why or "recorded at another preset"
    return stale


def read_verdicts(runs_dir: Path) -> list[dict]:
    folder = Path(runs_dir) / "verdicts"
    return [store.read_json(p) for p in sorted(folder.glob("*.json"))] if folder.exists() else []

def missing_from_edition(folder: Path, preset: str, datasets: list[str]) -> list[str]:
    """What an edition brought back from another machine (benchmarks/gpu_run.sh) lacks, unpacked into
    ``folder``: chapters executed at ``preset``, a verdict per claim, throughput rows, a campaign per
    dataset. Empty when complete."""
    folder = Path(folder)
    problems = []
    for name in CHAPTERS:
        notebook = folder / "book" / f"{name}.ipynb"
        if not notebook.exists():
            problems.append(f"chapter {name} not executed")
        elif json.loads(notebook.read_text())["metadata"].get("memrnn", {}).get("preset") != preset:
            problems.append(f"chapter {name} executed at another preset")
    for claim in RULES:
        if not (folder / "runs" / "verdicts" / f"{claim}.json").exists():
            problems.append(f"no verdict for {claim}")
    for arch in ("gru", "lstm"):
        table = folder / "runs" / "gpu-logs" / f"throughput-{arch}.log"
        # a measured row starts with its ensemble size E
        if not table.exists() or not any(line.lstrip()[:1].isdigit() for line in table.read_text().splitlines()):
            problems.append(f"no throughput row for {arch.upper()}")
    for dataset in datasets:
        if not (folder / "runs" / f"campaign-{preset}-{dataset}.json").exists():
            problems.append(f"no campaign on {dataset}")
    return problems


DEFAULT_RUNS = "../runs"  # the chapters' default: the repository's runs/, seen from book/
