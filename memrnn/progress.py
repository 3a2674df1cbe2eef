"""Training progress seen from outside the process that trains.

A book's networks train inside a chapter's kernel or on Dask workers, where no terminal shows their
bars. When ``MEMRNN_PROGRESS`` names a folder, every training loop (see ``train.Trainer.fit``) keeps
a small file there, ``<run>.json`` with its first, current and last step, rewritten about once a
second; :class:`TrainingBar` reads the folder and shows one bar, with an ETA, over the training in
flight. The folder is inherited by child processes through the environment, so the runner sets it
before it starts the kernels and the cluster's workers.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tqdm.auto import tqdm

from . import store

PROGRESS_ENV = "MEMRNN_PROGRESS"
INTERVAL = 1.0  # seconds between a training loop's reports, and between the bar's reads


class Reporter:
    """Writes a run's progress to ``$MEMRNN_PROGRESS/<run>.json``; does nothing when the variable is unset."""

    def __init__(self, run: str, start: int, end: int):
        folder = os.environ.get(PROGRESS_ENV)
        self.path = Path(folder) / f"{run}.json" if folder else None
        self.start, self.end, self.last = start, end, -INTERVAL

    def __call__(self, step: int) -> None:
        now = time.monotonic()
        if self.path is None or (now - self.last < INTERVAL and step < self.end):
            return
        self.last = now
        store.write_json(self.path, {"start": self.start, "step": step, "end": self.end})


def read(folder: Path) -> tuple[int, int, int]:
    """(steps done, steps in all, runs in flight) over the reports in ``folder``, each counted from the
    step its loop began at (a resumed run's earlier steps are not this run's work)."""
    done = total = flying = 0
    for path in Path(folder).glob("*.json"):
        try:
            report = store.read_json(path, dict)
        except (OSError, store.CorruptCheckpointError):  # removed or replaced while read
            continue
        done += report["step"] - report["start"]
        total += report["end"] - report["start"]
        flying += report["step"] < report["end"]
    return done, total, flying


class TrainingBar:
    """A bar over the training reported in ``folder`` while the block runs, drawn below the bar at
    ``position`` - 1 (papermill's cells). Reports left from an earlier block are removed on entry and on exit."""

    def __init__(self, folder: Path, position: int = 1, enabled: bool = True):
        self.folder, self.position, self.enabled = Path(folder), position, enabled
        self.stopped = threading.Event()

    def __enter__(self):
        self._clear()
        if self.enabled:
            self.thread = threading.Thread(target=self._show, name="training-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        if self.enabled:
            self.thread.join()
        self._clear()

    def _clear(self) -> None:
        for path in self.folder.glob("*.json"):
            path.unlink(missing_ok=True)

    def _show(self) -> None:
        bar = None
        while not self.stopped.wait(INTERVAL):
            done, total, flying = read(self.folder)
            if not total:
                continue
            if bar is None:
                bar = tqdm(total=total, desc="training", unit="step", position=self.position, leave=False,
                           dynamic_ncols=True)
            bar.total = total
            bar.set_postfix_str(f"{flying} run(s) in flight", refresh=False)
            bar.update(done - bar.n)
        if bar is not None:
            bar.close()
