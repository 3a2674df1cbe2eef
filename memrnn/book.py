"""The book: chapters as percent-format scripts in book/src, executed by papermill, rendered by Jupyter Book.

``run`` turns each source into a notebook (jupytext), writes the parameter values into its
parameters cell (so the page shows what ran, with no papermill injected cell), executes it with
papermill at a preset, stamps the notebook with a hash of its code (so a test can tell when a
chapter's code has drifted from what was executed) and writes it to book/. ``build`` renders the
executed notebooks to HTML without executing anything. Chapters record their verdicts with
:func:`record_verdict`; the scorecard reads them back. Chapters show what ran with :func:`run_box`
and what a fresh runtime would train with :func:`training_note`.
"""
from __future__ import annotations

import ast
import datetime
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from . import __version__, confine, store
from .display import CLAIM_CHAPTERS, write_summary
from .engine import shared_cluster
from .presets import PRESETS

CHAPTERS = ("01_task", "02_extrapolation", "03_slowpoints", "04_speed_predicts_memory", "05_formation",
            "06_regularization", "07_beyond", "08_choices", "09_own_network", "scorecard")
VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive")


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
    succeeds; a parameter no chapter takes (a typo) is refused before anything runs."""
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
    if parameters.get("preset", preset) != preset:
        raise ValueError(f"preset is given twice with different values ({preset!r} and {parameters['preset']!r} by "
                         "--set preset=...): give it once")
    output_dir = Path(output_dir or root / "book")
    output_dir.mkdir(parents=True, exist_ok=True)
    runs_dir = root / "book" / (parameters or {}).get("runs", DEFAULT_RUNS)
    if progress:
        print(estimate(output_dir / TIMINGS_FILE, preset, chapters, runs_dir), flush=True)
    with shared_cluster((parameters or {}).get("scheduler") or None) as address:
        if progress and address:
            print(f"one Dask cluster for every chapter: {address}", flush=True)
        return _run_chapters(root, preset, chapters, parameters, output_dir, runs_dir, progress)


TIMINGS_FILE = "timings.json"  # per preset, each chapter's seconds in the last execution of each kind


def _run_names(runs_dir: Path) -> set[str]:
    """The trained (or training) runs in a runs folder."""
    return {p.name for p in Path(runs_dir).iterdir() if (p / store.CONFIG_FILE).exists()} \
        if Path(runs_dir).is_dir() else set()


def record_timing(path: Path, preset: str, chapter: str, seconds: float, kind: str) -> None:
    """Keep a chapter's execution time: ``kind`` "from_empty" (its book execution began with an empty runs
    folder) or "cached" (it trained nothing)."""
    timings = store.read_json(path, dict) if Path(path).exists() else {}
    timings.setdefault(preset, {}).setdefault(kind, {})[chapter] = round(seconds, 1)
    store.write_json(path, timings)


def estimate(path: Path, preset: str, chapters, runs_dir: Path) -> str:
    """What the chapters took at ``preset`` when last executed from an empty runs folder and with no network
    to train, with what the runs folder holds now: the estimate printed before a book execution starts."""
    timings = (store.read_json(path, dict) if Path(path).exists() else {}).get(preset, {})
    parts = []
    for kind, words in (("from_empty", "from an empty runs folder"), ("cached", "with no network to train")):
        known = [timings.get(kind, {}).get(c) for c in chapters]
        # a partial sum would understate: say so rather than add up what is known
        parts.append(f"{_minutes(sum(known))} {words}" if all(t is not None for t in known) else f"{words}: not measured")
    if all(part.endswith("not measured") for part in parts):
        parts = []
    found = len(_run_names(runs_dir))
    measured = (f"last measured at {preset}: " + "; ".join(parts)) if parts else f"no execution at {preset} measured yet"
    return (f"Estimate for {len(chapters)} chapter(s), {measured} (on the machine that executed the committed book). "
            f"The runs folder {runs_dir} holds {found} run(s) now.")


def _run_chapters(root: Path, preset: str, chapters: list[str], parameters: dict | None, output_dir: Path,
                  runs_dir: Path, progress: bool) -> list[Path]:
    import nbformat
    import papermill

    written = []
    began = time.perf_counter()
    from_empty = not _run_names(runs_dir)
    for i, name in enumerate(chapters, 1):
        start = time.perf_counter()
        runs_before = _run_names(runs_dir)
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
            executed = papermill.execute_notebook(str(source), str(partial), cwd=str(root / "book"),
                                                  kernel_name="python3", progress_bar=progress, log_output=False)
        except papermill.PapermillExecutionError as e:
            raise RuntimeError(f"chapter {name} failed ({e.ename}: {e.evalue}); {target.name} is unchanged, the "
                               f"failed execution is in {partial}") from None
        finally:
            source.unlink()
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key)
                else:
                    os.environ[key] = value
        executed.metadata["memrnn"] = {"preset": preset, "parameters": values, "code_sha256": code_hash(executed)}
        nbformat.write(executed, partial)
        os.replace(partial, target)
        if name in CLAIM_CHAPTERS.values():  # the scorecard and the landing page read the summary
            write_summary(output_dir, read_verdicts(runs_dir))
        seconds = time.perf_counter() - start
        if from_empty:
            record_timing(output_dir / TIMINGS_FILE, preset, name, seconds, "from_empty")
        elif _run_names(runs_dir) <= runs_before:
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


def record_verdict(runs_dir: Path, claim, verdict: str | None = None, statistic: str | None = None,
                   preset: str | None = None, networks: int | None = None, details: dict | None = None, *,
                   code_sha256: str | None = None, parameters: dict | None = None) -> dict:
    """Store a chapter's verdict for the scorecard (runs_dir/verdicts/<claim>.json).

    ``claim`` is a :class:`memrnn.claims.Verdict` (its rule, details and scope are stored, preset and
    networks taken from its scope), or a claim id with the verdict given by the other arguments.
    ``code_sha256`` and ``parameters`` identify the code and parameters that produced the verdict, so
    that :func:`stale_reason` can tell a verdict left over from other code or parameters; under
    :func:`run` the chapter and its code hash (parameters cell included) are recorded by default."""
    from .claims import Verdict

    if isinstance(claim, Verdict):
        record = {**claim.to_dict(), "preset": claim.scope.preset, "networks": claim.scope.networks}
    else:
        record = {"claim": claim, "verdict": verdict, "statistic": statistic, "preset": preset,
                  "networks": networks, "details": details or {}}
    if record["verdict"] not in VERDICTS:
        raise ValueError(f"verdict {record['verdict']!r} must be one of {VERDICTS}")
    record.update(device=device_name(), chapter=os.environ.get("MEMRNN_CHAPTER"),
                  code_sha256=code_sha256 or os.environ.get("MEMRNN_CHAPTER_SHA256"), parameters=parameters)
    store.write_json(Path(runs_dir) / "verdicts" / f"{record['claim']}.json", record)
    return record


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


# Measured on two CPU cores: about 3 minutes per 5-network condition at the cpu preset
# (3,000 steps, 100 units, batch 32), i.e. about 0.012 s per network-step at that shape.
CPU_SECONDS_PER_NETWORK_STEP = 180 / (5 * 3000)


def code_version(checkout: Path = Path(__file__).parent) -> str:
    """The git commit of the package's checkout when there is one (saying so when the package or the
    chapters' sources differ from it, so a book is never credited to a commit it did not run), else
    the package version."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=checkout, capture_output=True, text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", ":/memrnn", ":/book/src")
    except (OSError, subprocess.CalledProcessError):
        return f"memrnn {__version__}"
    return f"commit {commit}" + (" with uncommitted changes" if changed else "")


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
    from .claims import RULES  # here: memrnn.claims imports this module

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


def device_name(device: str = "auto") -> str:
    """What a chapter computes on (the scorecard names it beside each verdict): on a CPU the cores this
    process may use (affinity and cgroup quota; on Binder not the host's count)."""
    import dask.system
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return f"CPU ({dask.system.CPU_COUNT} cores)"
    return f"GPU ({torch.cuda.get_device_name()})"


def run_box(config, archs, protocols, device: str = "auto", datasets=None):
    """A Markdown box saying exactly what this page ran: shown at the top of every chapter."""
    from IPython.display import Markdown

    archs, protocols = _names(archs), _names(protocols)
    datasets = _names(datasets) if datasets else [config.dataset]
    facts = [("preset", f"`{config.preset}`"), ("dataset" + "s" * (len(datasets) > 1), ", ".join(f"`{d}`" for d in datasets)),
             ("architectures", ", ".join(a.upper() for a in archs)), ("protocols", ", ".join(protocols)),
             ("seeds per condition", str(config.seeds)), ("training steps", f"{config.steps:,}"),
             ("units", str(config.hidden_size)), ("model form", _model_form(config)),
             ("code", code_version()), ("date", datetime.date.today().isoformat()),
             ("device", device_name(device))]
    return Markdown("> **What ran.** " + " · ".join(f"{k}: {v}" for k, v in facts))


def _model_form(config) -> str:
    from .evidence import model_form_label

    return model_form_label(config) + " (see Deviations)"


def training_note(preset: str, archs, protocols, runs: str, datasets=None, **overrides):
    """How many networks this chapter trains on a fresh runtime, with a time estimate, and how many are
    already in the runs cache."""
    from IPython.display import Markdown

    from .presets import make_config

    each = [{"dataset": d} for d in _names(datasets)] if datasets else [{}]
    configs = [make_config(preset, arch=a, protocol=p, **overrides, **d)
               for d in each for a in _names(archs) for p in _names(protocols)]
    total = sum(c.seeds for c in configs)
    cached = sum(c.seeds for c in configs if (Path(runs) / store.run_name(c) / "summary.json").exists())
    seconds = sum(c.seeds * c.steps * _cost(c) for c in configs) * CPU_SECONDS_PER_NETWORK_STEP
    return Markdown(f"On a fresh runtime this chapter trains {total} networks (~{_minutes(seconds)} on 2 CPU "
                    f"cores, scaled from the `cpu` preset's measured time; GPU time not measured yet). "
                    f"{cached} of them were found in the runs cache `{runs}` here.")


def _cost(config) -> float:
    """Work per step relative to the cpu preset's shape (batch 32, 100 units): batch x units²."""
    return config.batch_size * config.hidden_size ** 2 / (32 * 100 ** 2)


def _names(value) -> list[str]:
    return value.split(",") if isinstance(value, str) else list(value)


DEFAULT_RUNS = "../runs"  # the chapters' default: the repository's runs/, seen from book/
COLAB_RUNS = "/content/runs"


def prepare_runs(runs: str, on_colab: bool | None = None, record: Path | None = None) -> str:
    """The runs cache. On Colab a notebook opened alone sits in /content, where the default ``../runs``
    would be /runs: it becomes /content/runs. A folder under /content/drive is mounted first, so a
    Colab session keeps its runs.

    When the package records a published archive of trained runs (``record``, default
    ``memrnn/runs-archive.json``), the chapters' own caches (the default folder, /content/runs or a
    Drive folder) that lack some of its runs get them from it before anything trains (see
    :func:`memrnn.archive.fetch_published`); a folder chosen otherwise, a test's say, is left alone."""
    if on_colab is None:
        import importlib.util

        try:
            on_colab = importlib.util.find_spec("google.colab") is not None
        except ModuleNotFoundError:  # no "google" package at all
            on_colab = False
    if on_colab and runs == DEFAULT_RUNS:
        runs = COLAB_RUNS
    if runs.startswith("/content/drive") and not Path("/content/drive/MyDrive").exists():
        from google.colab import drive

        drive.mount("/content/drive")
    Path(runs).mkdir(parents=True, exist_ok=True)
    if runs in (DEFAULT_RUNS, COLAB_RUNS) or runs.startswith("/content/drive"):
        from . import archive

        archive.fetch_published(runs, record or archive.RECORD)
    return runs


class Table:
    """A captioned table that every viewer can show: MyST Markdown for the book (a numbered ``table``
    directive; the book prefers this form, see ``_config.yml``) and HTML for Jupyter and Colab, which
    prefer HTML and would show the directive as raw text."""

    def __init__(self, header, rows, caption: str):
        if not caption:
            raise ValueError("a table needs a caption (what it shows, with units)")
        self.header, self.rows, self.caption = list(header), [list(r) for r in rows], caption

    @staticmethod
    def _cell(value) -> str:  # a bare | would end the cell and drop what follows it
        return str(value).replace("\\|", "|").replace("|", "\\|")

    def _repr_markdown_(self) -> str:
        lines = ["| " + " | ".join(self._cell(c) for c in self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(self._cell(c) for c in row) + " |" for row in self.rows]
        return f"```{{table}} {self.caption}\n:align: left\n\n" + "\n".join(lines) + "\n```"

    def _repr_html_(self) -> str:
        from .display import inline_html

        head = "".join(f"<th>{inline_html(c)}</th>" for c in self.header)
        body = "".join("<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return (f'<table><caption style="caption-side: top; text-align: left">{inline_html(self.caption)}</caption>'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def markdown_table(header, rows, caption: str) -> Table:
    """A table of ``rows`` under ``header`` with its ``caption`` (see :class:`Table`)."""
    return Table(header, rows, caption)
