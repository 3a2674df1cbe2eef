"""The book: chapters as percent-format scripts in book/src, executed by papermill, rendered by Jupyter Book.

``run`` turns each source into a notebook (jupytext), executes it with papermill at a preset,
tags papermill's injected-parameters cell ``hide-input``, stamps the notebook with a hash of its
code (so a test can tell when a chapter's code has drifted from what was executed) and writes it
to book/. ``build`` renders the executed notebooks to HTML without executing anything.
Chapters record their verdicts with :func:`record_verdict`; the scorecard reads them back.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from . import store

CHAPTERS = ("01_task", "02_extrapolation", "03_slowpoints", "04_speed_predicts_memory", "05_formation",
            "06_regularization", "07_beyond", "08_choices", "scorecard")
VERDICTS = ("reproduced", "partly reproduced", "not reproduced")


def source_notebook(path: Path):
    import jupytext

    return jupytext.read(path)


def code_hash(notebook) -> str:
    """Hash of the chapter's own code cells (papermill's injected parameters excluded)."""
    cells = [c.source for c in notebook.cells
             if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def run(root: Path, preset: str, chapters=None, parameters: dict | None = None, output_dir: Path | None = None,
        progress: bool = True) -> list[Path]:
    """Execute chapters at ``preset`` (in order) and write the executed notebooks."""
    import nbformat
    import papermill

    root = Path(root)
    chapters = list(chapters or CHAPTERS)
    unknown = [c for c in chapters if c not in CHAPTERS]
    if unknown:
        raise ValueError(f"unknown chapter(s) {unknown}; choose from {CHAPTERS}")
    output_dir = Path(output_dir or root / "book")
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, name in enumerate(chapters, 1):
        start = time.perf_counter()
        if progress:
            print(f"[{i}/{len(chapters)}] {name} at preset {preset} ...", flush=True)
        notebook = source_notebook(root / "book" / "src" / f"{name}.py")
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        source = output_dir / f".{name}.source.ipynb"
        nbformat.write(notebook, source)
        target = output_dir / f"{name}.ipynb"
        executed = papermill.execute_notebook(
            str(source), str(target), parameters={"preset": preset, **(parameters or {})},
            cwd=str(root / "book"), kernel_name="python3", progress_bar=False, log_output=False)
        source.unlink()
        for cell in executed.cells:
            tags = cell.metadata.setdefault("tags", [])
            if "injected-parameters" in tags and "hide-input" not in tags:
                tags.append("hide-input")
        executed.metadata["memrnn"] = {"preset": preset, "code_sha256": code_hash(executed)}
        nbformat.write(executed, target)
        written.append(target)
        if progress:
            print(f"[{i}/{len(chapters)}] {name} done in {time.perf_counter() - start:.0f} s", flush=True)
    return written


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
    that :func:`stale_reason` can tell a verdict left over from other code or parameters."""
    from .claims import Verdict

    if isinstance(claim, Verdict):
        record = {**claim.to_dict(), "preset": claim.scope.preset, "networks": claim.scope.networks}
    else:
        record = {"claim": claim, "verdict": verdict, "statistic": statistic, "preset": preset,
                  "networks": networks, "details": details or {}}
    if record["verdict"] not in VERDICTS:
        raise ValueError(f"verdict {record['verdict']!r} must be one of {VERDICTS}")
    record.update(code_sha256=code_sha256, parameters=parameters)
    store.write_json(Path(runs_dir) / "verdicts" / f"{record['claim']}.json", record)
    return record


def stale_reason(record: dict, code_sha256: str, parameters: dict) -> str | None:
    """Why a recorded verdict does not come from the chapter's committed execution, or None if it does."""
    if record.get("code_sha256") != code_sha256:
        return "recorded by other chapter code"
    if record.get("parameters") != parameters:
        return "recorded with other parameters"
    return None


def read_verdicts(runs_dir: Path) -> list[dict]:
    folder = Path(runs_dir) / "verdicts"
    return [store.read_json(p) for p in sorted(folder.glob("*.json"))] if folder.exists() else []
