"""Helpers the chapters call: where the runs cache is (:func:`prepare_runs`), what a page ran
(:func:`run_box`), would train (:func:`training_note`) and took when the book was executed
(:func:`runtime_note`), captioned tables (:func:`markdown_table`), the configuration fields of an
arithmetic (:func:`arithmetic_overrides`) and the verdicts the scorecard reads back (:func:`record_verdict`).
The runner that executes and builds the book is :mod:`memrnn.book`.
"""
from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

from . import __version__, store
from .book import CHAPTERS, DEFAULT_RUNS, MACHINE_KEY, TIMINGS_FILE, _minutes


def record_verdict(runs_dir: Path, claim, verdict: str | None = None, statistic: str | None = None,
                   preset: str | None = None, networks: int | None = None, details: dict | None = None, *,
                   code_sha256: str | None = None, parameters: dict | None = None) -> dict:
    """Store a chapter's verdict for the scorecard (runs_dir/verdicts/<claim>.json).

    ``claim`` is a :class:`memrnn.claims.Verdict` (its rule, details, scope and verdicts per dataset,
    ``by_dataset``, are stored, preset and networks taken from its scope), or a claim id with the verdict given by the other arguments.
    ``code_sha256`` and ``parameters`` identify the code and parameters that produced the verdict, so
    that :func:`memrnn.book.stale_reason` can tell a verdict left over from other code or parameters; under
    :func:`memrnn.book.run` the chapter and its code hash (parameters cell included) are recorded by default."""
    from .claims import VERDICTS, Verdict

    if isinstance(claim, Verdict):
        record = {**claim.to_dict(), "preset": claim.scope.preset, "networks": claim.scope.networks}
    else:
        record = {"claim": claim, "verdict": verdict, "statistic": statistic, "preset": preset,
                  "networks": networks, "details": details or {}}
    for verdict in [record["verdict"], *(d["verdict"] for d in record.get("by_dataset", {}).values())]:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r} must be one of {VERDICTS}")
    record.update(device=device_name(), chapter=os.environ.get("MEMRNN_CHAPTER"),
                  code_sha256=code_sha256 or os.environ.get("MEMRNN_CHAPTER_SHA256"), parameters=parameters)
    store.write_json(Path(runs_dir) / "verdicts" / f"{record['claim']}.json", record)
    return record


def arithmetic_overrides(arithmetic: str) -> dict:
    """The configuration fields of a chapter's ``arithmetic`` parameter: none for "" (the preset's own), else
    those of :data:`memrnn.presets.ARITHMETICS` ("fast": the fast path, "float32": the float32 reference).
    Every configuration a chapter builds takes them, so the runs of two editions have different names."""
    from .presets import ARITHMETICS

    if arithmetic == "":
        return {}
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic={arithmetic!r} is not allowed: choose \"\" (the preset's), "
                         + " or ".join(f'"{name}"' for name in ARITHMETICS))
    return dict(ARITHMETICS[arithmetic])


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

    from .presets import arithmetic

    archs, protocols = _names(archs), _names(protocols)
    datasets = _names(datasets) if datasets else [config.dataset]
    facts = [("preset", f"`{config.preset}`"), ("dataset" + "s" * (len(datasets) > 1), ", ".join(f"`{d}`" for d in datasets)),
             ("architectures", ", ".join(a.upper() for a in archs)), ("protocols", ", ".join(protocols)),
             ("seeds per condition", str(config.seeds)), ("training steps", f"{config.steps:,}"),
             ("units", str(config.hidden_size)), ("model form", _model_form(config)),
             ("arithmetic", f"`{arithmetic(config)}`"),
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

    from .presets import cpu_seconds, make_config

    each = [{"dataset": d} for d in _names(datasets)] if datasets else [{}]
    configs = [make_config(preset, arch=a, protocol=p, **overrides, **d)
               for d in each for a in _names(archs) for p in _names(protocols)]
    total = sum(c.seeds for c in configs)
    cached = sum(c.seeds for c in configs if (Path(runs) / store.run_name(c) / "summary.json").exists())
    seconds = cpu_seconds(configs)
    return Markdown(f"On a fresh runtime this chapter trains {total} networks (~{_minutes(seconds)} on 2 CPU "
                    f"cores, scaled from the `cpu` preset's measured time; GPU time not measured yet). "
                    f"{cached} of them were found in the runs cache `{runs}` here.")


def runtime_note(chapter: str, preset: str, timings: Path = Path(TIMINGS_FILE)):
    """The chapter's times at ``preset`` as the book runner last measured them (``timings``: the file
    :func:`memrnn.book.run` writes beside the notebooks it executes), so that a page states no time the
    book did not measure. "From an empty runs folder" is the runner's case: an execution that began
    with no run, the chapters before this one in it included."""
    from IPython.display import Markdown

    from .presets import PRESETS

    if chapter not in CHAPTERS:
        raise ValueError(f"chapter {chapter!r} is not allowed: choose one of {', '.join(CHAPTERS)}")
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} is not allowed: choose one of {', '.join(PRESETS)}")
    if not Path(timings).exists():
        return Markdown(f"**Measured runtime at `{preset}`:** none here (no `{TIMINGS_FILE}` beside this notebook).")
    recorded = store.read_json(timings, dict).get(preset, {})

    def took(kind):
        seconds = recorded.get(kind, {}).get(chapter)
        if seconds is None:
            return "not measured yet"
        on = recorded.get(MACHINE_KEY, {}).get(kind)
        return _minutes(seconds) + (f" ({on})" if on else "")

    return Markdown(f"**Measured runtime at `{preset}`** (`memrnn book run`, recorded in `book/{TIMINGS_FILE}`): "
                    f"from an empty runs folder, {took('from_empty')}; with no network to train, {took('cached')}.")


def _names(value) -> list[str]:
    return value.split(",") if isinstance(value, str) else list(value)


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
