"""Progress of long work seen from outside the process that does it.

A book's networks train, and their slow points are searched and traced, inside a chapter's kernel or
on Dask workers, where no terminal shows their bars. When ``MEMRNN_PROGRESS`` names a folder, every
training loop (``train.Trainer.fit``), reference slow-point search (``slowpoints.analyse_run``) and
formation trace (``formation.trace_run``) keeps a small file there, ``<name>.json`` with its kind of
work and its first, current and last step, rewritten about once a second; :class:`ProgressBars` reads
the folder and shows a bar per kind of work, with an ETA, over what is in flight. The folder is
inherited by child processes through the environment, so the runner sets it before it starts the
kernels and the cluster's workers.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tqdm.auto import tqdm

from . import store

PROGRESS_ENV = "MEMRNN_PROGRESS"
INTERVAL = 1.0  # seconds between a task's reports, and between the bars' reads


TRAINING, SEARCH, TRACE = "training", "slow-point search", "formation trace"
UNITS = {TRAINING: "step", SEARCH: "iteration", TRACE: "checkpoint"}


class Reporter:
    """Writes one task's progress to ``$MEMRNN_PROGRESS/<name>.json``; does nothing when the variable is unset."""

    def __init__(self, name: str, start: int, end: int, kind: str = TRAINING):
        if kind not in UNITS:
            raise ValueError(f"unknown kind of work {kind!r}; choose one of {tuple(UNITS)}")
        folder = os.environ.get(PROGRESS_ENV)
        self.path = Path(folder) / f"{name}.json" if folder else None
        self.start, self.end, self.kind, self.last = start, end, kind, -INTERVAL

    def __call__(self, step: int) -> None:
        now = time.monotonic()
        if self.path is None or (now - self.last < INTERVAL and step < self.end):
            return
        self.last = now
        store.write_json(self.path, {"kind": self.kind, "start": self.start, "step": step, "end": self.end})


def read(folder: Path) -> dict[str, tuple[int, int, int]]:
    """{kind: (steps done, steps in all, tasks in flight)} over the reports in ``folder``, each counted
    from the step its loop began at (a resumed run's earlier steps are not this run's work)."""
    kinds = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            report = store.read_json(path, dict)
        except (OSError, store.CorruptCheckpointError):  # removed or replaced while read
            continue
        done, total, flying = kinds.get(report["kind"], (0, 0, 0))
        kinds[report["kind"]] = (done + report["step"] - report["start"], total + report["end"] - report["start"],
                                 flying + (report["step"] < report["end"]))
    return kinds


class ProgressBars:
    """A bar per kind of work reported in ``folder`` while the block runs, drawn below the bar at
    ``position`` - 1 (papermill's cells). Reports left from an earlier block are removed on entry and on exit."""

    def __init__(self, folder: Path, position: int = 1, enabled: bool = True):
        self.folder, self.position, self.enabled = Path(folder), position, enabled
        self.stopped = threading.Event()

    def __enter__(self):
        self._clear()
        if self.enabled:
            self.thread = threading.Thread(target=self._show, name="work-progress", daemon=True)
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
        bars = {}
        while not self.stopped.wait(INTERVAL):
            for kind, (done, total, flying) in read(self.folder).items():
                if not total:  # only work already done before this block began (a finished run resumed)
                    continue
                if kind not in bars:
                    bars[kind] = tqdm(total=total, desc=kind, unit=UNITS[kind], position=self.position + len(bars),
                                      leave=False, dynamic_ncols=True)
                bar = bars[kind]
                bar.total = total
                bar.set_postfix_str(f"{flying} in flight", refresh=False)
                bar.update(done - bar.n)
        for bar in bars.values():
            bar.close()
