"""The run store: one directory per configuration, atomic writes, verified checkpoints.

A run directory is named by a hash of every field that changes the result, so asking for the
same configuration again finds the cached run. Every file is written to a temporary name and
renamed, so a killed process never leaves a half-written file under a real name. Checkpoints
are safetensors files (no pickle is ever executed on load) listed with their SHA-256 in
``checkpoints/index.json``; a file that does not match is reported, never used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from safetensors.torch import load, save

from .presets import Config

# fields that do not change the trained weights
_NOT_HASHED = ("device", "log_every", "preset", "eval_trials", "speed_metric", "search", "search_iterations",
               "centroids", "finetune", "finetune_fraction")
CONFIG_FILE, SUMMARY_FILE, METRICS_FILE = "config.json", "summary.json", "metrics.json"


class CorruptCheckpointError(RuntimeError):
    pass


# fields added after runs existed: hashed only when set away from this value, so older runs keep their names
_HASHED_WHEN_SET = {"fast": False}


def config_hash(config: Config) -> str:
    fields = {k: v for k, v in dataclasses.asdict(config).items()
              if k not in _NOT_HASHED and _HASHED_WHEN_SET.get(k, object()) != v}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def run_name(config: Config) -> str:
    return f"{config.dataset}-{config.arch}-{config.protocol}-{config_hash(config)}"


def atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1).encode())


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise CorruptCheckpointError(f"{path} is not valid JSON ({e})") from None


def read_config(run_dir: Path) -> Config:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    values = read_json(path)
    try:
        return Config(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a valid run configuration ({e}); retrain the run with "
                         "`memrnn train --fresh` and the options that made it") from None


def _index_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "index.json"


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of all recorded checkpoints, oldest first."""
    index = _index_path(run_dir)
    return sorted(int(s) for s in read_json(index)) if index.exists() else []


def save_checkpoint(run_dir: Path, step: int, tensors: dict[str, torch.Tensor], metrics: list | None = None) -> Path:
    """Write ``checkpoints/step_XXXXXXX.safetensors`` and record its hash.

    The training log up to ``step`` travels inside the file's metadata, so weights and metrics are
    committed together: a kill between this and writing ``metrics.json`` loses nothing."""
    metadata = {"step": str(step)}
    if metrics is not None:
        metadata["metrics"] = json.dumps(metrics)
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    path = Path(run_dir) / "checkpoints" / f"step_{step:07d}.safetensors"
    atomic_write(path, data)
    index = read_json(_index_path(run_dir)) if _index_path(run_dir).exists() else {}
    index[str(step)] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
    write_json(_index_path(run_dir), index)
    return path


def load_checkpoint(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """Tensors of the checkpoint at ``step``, after checking its hash."""
    return load(_verified_bytes(run_dir, step))


def checkpoint_metrics(run_dir: Path, step: int) -> list[dict]:
    """The training log committed with the checkpoint at ``step`` (older checkpoints without one:
    the entries of ``metrics.json`` up to ``step``)."""
    data = _verified_bytes(run_dir, step)
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    recorded = header.get("__metadata__", {}).get("metrics")
    if recorded is not None:
        return json.loads(recorded)
    return [m for m in read_json(Path(run_dir) / METRICS_FILE) if m["step"] <= step]


def _verified_bytes(run_dir: Path, step: int) -> bytes:
    entry = read_json(_index_path(run_dir)).get(str(step))
    if entry is None:
        raise KeyError(f"no checkpoint at step {step} in {run_dir}; have {checkpoint_steps(run_dir)}")
    path = Path(run_dir) / "checkpoints" / entry["file"]
    data = path.read_bytes() if path.exists() else b""
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CorruptCheckpointError(f"checkpoint {path} is missing or does not match its recorded SHA-256")
    return data


def latest_valid_checkpoint(run_dir: Path) -> tuple[int, dict[str, torch.Tensor]] | None:
    """The newest checkpoint that verifies, warning about any newer one that does not."""
    for step in reversed(checkpoint_steps(run_dir)):
        try:
            return step, load_checkpoint(run_dir, step)
        except CorruptCheckpointError as e:
            warnings.warn(f"skipping corrupt checkpoint: {e}", stacklevel=2)
    return None


_held_locks = threading.local()  # run directories this thread has locked


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold an exclusive lock on a run directory (``.lock`` inside it) for the duration of the block.

    Training, fine-tuning and analyses that write a run take it, so two processes (two CLI calls, two
    campaign workers) never write one run at once: the second waits, then finds the first's results.
    The lock is an OS file lock, released by the kernel if its holder dies. A thread that already
    holds it passes straight through (a task that locks a run may call code that locks it again)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    held = _held_locks.__dict__.setdefault("paths", set())
    key = run_dir.resolve()
    if key in held:
        yield run_dir
        return
    with open(run_dir / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.add(key)
        try:
            yield run_dir
        finally:
            held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)


def trained_step(run_dir: Path, step: int | None = None) -> int:
    """The checkpoint an analysis of ``run_dir`` uses: ``step`` if given and recorded, else the final
    one of a finished run. Refuses an unfinished run without an explicit step, so no result is ever
    computed from a checkpoint that training has not finished with."""
    read_config(run_dir)
    steps = checkpoint_steps(run_dir)
    if step is not None:
        if step not in steps:
            raise ValueError(f"--step {step}: {run_dir} has no checkpoint at that step; have {steps}")
        return step
    path = Path(run_dir) / SUMMARY_FILE
    summary = read_json(path) if path.exists() else {}
    if "train" not in summary:
        last = f"last checkpoint at step {steps[-1]}" if steps else "no checkpoint yet"
        raise ValueError(f"{run_dir} has not finished training ({last}): finish it with `memrnn train` "
                         "(same options), or pass an explicit --step where the command has one")
    final = summary["train"]["steps"]
    if not steps or steps[-1] != final:
        raise ValueError(f"{run_dir}: summary says training ended at step {final} but the checkpoints end at "
                         f"{steps[-1] if steps else None}; retrain with `memrnn train --fresh`")
    return final


def update_summary(run_dir: Path, **sections) -> dict:
    """Merge ``sections`` into the run's JSON summary."""
    path = Path(run_dir) / SUMMARY_FILE
    summary = read_json(path) if path.exists() else {}
    summary.update(sections)
    write_json(path, summary)
    return summary
