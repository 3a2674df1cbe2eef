"""The run store: one directory per configuration, atomic writes, verified checkpoints.

A run directory is named by a hash of every field that changes the result, so asking for the
same configuration again finds the cached run. Every file is written to a temporary name and
renamed, so a killed process never leaves a half-written file under a real name; only a regular
file is ever replaced. Checkpoints are safetensors files (no pickle is ever executed on load) listed
with their SHA-256 in ``checkpoints/index.json``, with sorted headers so that identical runs give
identical files. Every read verifies what it uses: a checkpoint must be the file its index names,
inside ``checkpoints/``, match its hash, hold finite numbers and exactly the tensors its configuration
implies; ``config.json`` must hash to the directory's name. A file that fails is reported with its path,
never used. Every path inside a run is checked by :func:`run_file` (no symbolic link anywhere below the
run), so nothing outside the run is ever read, written or removed through it. A result cached in a run
records the SHA-256 of each checkpoint it came from (:func:`checkpoint_sha256`) and is served only while
the checkpoint it names still has that hash.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import glob
import hashlib
import json
import math
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import load, save

from . import confine
from .presets import CNN_FORM, Config

# fields that do not change the trained weights
_NOT_HASHED = ("device", "log_every", "preset", "eval_trials", "speed_metric", "search", "search_iterations",
               "centroids", "finetune", "finetune_fraction")
CONFIG_FILE, SUMMARY_FILE, METRICS_FILE = "config.json", "summary.json", "metrics.json"
INDEX_FILE = "checkpoints/index.json"  # relative to the run directory


class CorruptCheckpointError(RuntimeError):
    pass


# fields added after runs existed: hashed only when set away from this value, so older runs keep their names
_HASHED_WHEN_SET = {"fast": False}
# the fast path's arithmetic and data streams, hashed into its runs' names: bumped when they change, so a
# run trained by an earlier fast path is never reused as one of the current (2: Philox noise, C kernels;
# 3: whole unrolls in C, their small matmuls tiled there; 4: probe noise drawn in projected form; 5: the
# training noise the config's ``noise`` names, bf16 matmuls as float32 where the CPU has no bf16)
FAST_PATH_VERSION = 5


def config_hash(config: Config) -> str:
    """The CNN's fields are hashed only for a dataset with a CNN: they change no other run's weights, so
    those keep their names. A fast run's hash holds ``FAST_PATH_VERSION``."""
    fields = {k: v for k, v in dataclasses.asdict(config).items()
              if k not in _NOT_HASHED and _HASHED_WHEN_SET.get(k, object()) != v
              and (config.has_cnn or k not in CNN_FORM)}
    if config.fast:
        fields["fast_path_version"] = FAST_PATH_VERSION
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def run_name(config: Config) -> str:
    return f"{config.dataset}-{config.arch}-{config.protocol}-{config_hash(config)}"


def run_file(run_dir: Path, relative: str) -> Path:
    """The path of ``relative`` inside a run, after checking that no part of it below the run directory is
    a symbolic link (a linked ``checkpoints`` folder would lead reads and writes out of the run)."""
    return confine.inside(run_dir, relative)


@contextlib.contextmanager
def atomic_file(path: Path):
    """A binary file whose contents replace ``path`` only once written in full: a failure or a kill
    leaves the old file (or none), never a partial one under the real name. The temporary file is
    locked while written, so the next write of ``path`` removes those of writers that died."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_unless_regular(path)
    _sweep_dead_writers(path)
    fd, tmp = _locked_temporary(path)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _locked_temporary(path: Path) -> tuple[int, str]:
    """A new temporary file next to ``path``, locked by this process (retried if a sweep took it first)."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        if hold(fd):
            return fd, tmp


def hold(fd: int) -> bool:
    """Lock the new temporary file or folder open as ``fd`` for as long as it is open, so that
    :func:`remove_if_dead` leaves it alone; False (``fd`` closed) when a sweep removed it first."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    if os.fstat(fd).st_nlink:
        return True
    os.close(fd)
    return False


def remove_if_dead(path: Path) -> None:
    """Remove the temporary file or folder ``path`` unless a live process holds it (see :func:`hold`):
    what a killed writer left. A link or anything else is left alone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # gone, or a link
        return
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path, ignore_errors=True) if stat.S_ISDIR(mode) else path.unlink(missing_ok=True)
    except BlockingIOError:  # a live writer's
        pass
    finally:
        os.close(fd)


def _sweep_dead_writers(path: Path) -> None:
    """Remove the temporary files of ``path`` that no live writer holds (a killed write's)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        remove_if_dead(stale)


def atomic_write(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def _refuse_unless_regular(path: Path) -> None:
    """A rename would silently swap a FIFO, a device or a symlink for a plain file: only a regular file
    (or nothing) may be at a path we write."""
    try:
        confine.refuse_unless_regular(path)
    except ValueError as e:
        raise ValueError(f"{e} (give another path)") from None


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1).encode())


def read_json(path: Path, kind: type = object):
    """The JSON value in ``path``, which must be a regular file holding a ``kind`` (e.g. dict) to be of use."""
    try:
        value = json.loads(confine.read_regular(Path(path)))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptCheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(value, kind):
        raise CorruptCheckpointError(f"{path} is corrupt: it holds a JSON {_JSON_NAMES[type(value)]}, "
                                     f"not the {_JSON_NAMES[kind]} expected")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def read_summary(run_dir: Path) -> dict:
    """The run's summary (empty before anything is recorded). Every file a section names must be a file
    of the run itself, named plainly (no folder, no '..', no absolute path)."""
    path = run_file(run_dir, SUMMARY_FILE)
    summary = read_json(path, dict) if os.path.lexists(path) else {}
    for section, value in summary.items():
        if isinstance(value, dict) and "file" in value and not confine.plain_name(value["file"]):
            raise CorruptCheckpointError(f"{path} is corrupt: section {section!r} names {value['file']!r}, which is "
                                         "not a file of the run: remove that section, or retrain the run")
    return summary


def read_config(run_dir: Path) -> Config:
    path = run_file(run_dir, CONFIG_FILE)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    values = read_json(path, dict)
    try:
        config = Config(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a valid run configuration ({e}); retrain the run with "
                         "`memrnn train --fresh` and the options that made it") from None
    # a directory is named by its configuration's hash (a fine-tuned child: its parent's name, then "--")
    name = Path(os.path.abspath(run_dir)).name
    if name.split("--")[0] != run_name(config):
        why = (f"a fast run named so was trained by an earlier fast path (not version {FAST_PATH_VERSION}, whose "
               "noise and arithmetic differ), or" if config.fast else "")
        raise ValueError(f"{path} describes run {run_name(config)}, not {name}: {why} the directory was renamed or "
                         "its configuration edited; retrain with `memrnn train --fresh` and the run's options")
    return config


def _index_path(run_dir: Path) -> Path:
    return run_file(run_dir, INDEX_FILE)


def _checkpoint_name(step: int) -> str:
    return f"step_{step:07d}.safetensors"


def _read_index(run_dir: Path) -> dict:
    """``index.json`` after checking every entry is a step naming its own file (so nothing outside
    ``checkpoints/`` is ever read) and a SHA-256."""
    path = _index_path(run_dir)
    if not os.path.lexists(path):
        return {}
    index = read_json(path, dict)
    for step, entry in index.items():
        ok = step.isascii() and step.isdigit() and isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
        if not ok or entry.get("file") != _checkpoint_name(int(step)):
            raise CorruptCheckpointError(f"{path} is corrupt: entry {step!r}: {json.dumps(entry)[:80]} is not "
                                         f"{{\"file\": \"step_NNNNNNN.safetensors\", \"sha256\": ...}} for its step; "
                                         "retrain with `memrnn train --fresh`")
    return index


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of all recorded checkpoints, oldest first."""
    return sorted(int(s) for s in _read_index(run_dir))


def _sorted_header(data: bytes) -> bytes:
    """safetensors writes its metadata map in a per-process random order: re-serialise the header with
    sorted keys (space-padded to 8 bytes, as safetensors pads it) so identical states give identical files."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data[8 + n:]


def save_checkpoint(run_dir: Path, step: int, tensors: dict[str, torch.Tensor], metrics: list | None = None) -> Path:
    """Write ``checkpoints/step_XXXXXXX.safetensors`` and record its hash.

    The training log up to ``step`` travels inside the file's metadata, so weights and metrics are
    committed together: a kill between this and writing ``metrics.json`` loses nothing."""
    metadata = {"step": str(step)}
    if metrics is not None:
        metadata["metrics"] = json.dumps(metrics)
    data = _sorted_header(save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata))
    path = run_file(run_dir, f"checkpoints/{_checkpoint_name(step)}")
    atomic_write(path, data)
    index = _read_index(run_dir)
    index[str(step)] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
    write_json(_index_path(run_dir), index)
    return path


def load_checkpoint(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """Tensors of the checkpoint at ``step``, after checking its hash, that every number is finite and
    that its tensors are exactly those of the run's configuration (an index rewritten to match a damaged
    file must not pass)."""
    from .runs import checkpoint_mismatch  # here: memrnn.runs imports this module

    path, data = _verified_bytes(run_dir, step)
    try:
        tensors = load(data)
    except Exception as e:  # safetensors raises its own error types for a malformed file
        raise CorruptCheckpointError(f"checkpoint {path} is not a readable safetensors file ({e})") from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CorruptCheckpointError(f"checkpoint {path} holds non-finite numbers (in {', '.join(bad[:3])})")
    # a folder without a configuration is no run (every command refuses it): nothing is implied there
    configured = os.path.lexists(run_file(run_dir, CONFIG_FILE))
    wrong = configured and checkpoint_mismatch(read_config(run_dir), set(tensors))
    if wrong:
        raise CorruptCheckpointError(f"checkpoint {path} does not hold the tensors of its run's configuration "
                                     f"({wrong}): retrain with `memrnn train --fresh`")
    return tensors


def checkpoint_sha256(run_dir: Path, step: int) -> str:
    """The recorded SHA-256 of the checkpoint at ``step``: what a result computed from it records, so
    that the result is served only while that checkpoint is the one there."""
    entry = _read_index(run_dir).get(str(step))
    if entry is None:
        raise KeyError(f"no checkpoint at step {step} in {run_dir}; have {checkpoint_steps(run_dir)}")
    return entry["sha256"]


def checkpoint_hashes(run_dir: Path) -> dict[str, str]:
    """{step: SHA-256} of every recorded checkpoint, after checking that each one present still has
    its hash (an archive may hold only the final one; a damaged earlier one is an error)."""
    hashes = {}
    for step in checkpoint_steps(run_dir):
        path = run_file(run_dir, f"checkpoints/{_checkpoint_name(step)}")
        if os.path.lexists(path):
            _verified_bytes(run_dir, step)
        hashes[str(step)] = checkpoint_sha256(run_dir, step)
    return hashes


def checkpoint_metrics(run_dir: Path, step: int) -> list[dict]:
    """The training log committed with the checkpoint at ``step`` (older checkpoints without one:
    the entries of ``metrics.json`` up to ``step``)."""
    path, data = _verified_bytes(run_dir, step)
    try:
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        recorded = header.get("__metadata__", {}).get("metrics")
        if recorded is not None:
            return json.loads(recorded)
    except (ValueError, AttributeError) as e:
        raise CorruptCheckpointError(f"checkpoint {path} has an unreadable header ({e})") from None
    return [m for m in read_json(run_file(run_dir, METRICS_FILE), list) if m["step"] <= step]


def checkpoint_file(run_dir: Path, step: int) -> tuple[Path, bytes]:
    """The path and bytes of the checkpoint at ``step``, checked against its index entry, for copying
    the file unchanged (an archive of the run, say)."""
    return _verified_bytes(run_dir, step)


def _verified_bytes(run_dir: Path, step: int) -> tuple[Path, bytes]:
    entry = _read_index(run_dir).get(str(step))
    if entry is None:
        raise KeyError(f"no checkpoint at step {step} in {run_dir}; have {checkpoint_steps(run_dir)}")
    path = run_file(run_dir, f"checkpoints/{entry['file']}")
    try:
        data = confine.read_regular(path)  # a symlink could lead anywhere, a FIFO would block
    except FileNotFoundError:
        data = b""
    except ValueError:
        raise CorruptCheckpointError(f"checkpoint {path} is not a regular file") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CorruptCheckpointError(f"checkpoint {path} is missing or does not match its recorded SHA-256")
    return path, data


def latest_valid_checkpoint(run_dir: Path) -> tuple[int, dict[str, torch.Tensor]] | None:
    """The newest checkpoint that verifies, warning about any newer one that does not."""
    for step in reversed(checkpoint_steps(run_dir)):
        try:
            return step, load_checkpoint(run_dir, step)
        except CorruptCheckpointError as e:
            warnings.warn(f"skipping corrupt checkpoint: {e}", stacklevel=2)
    return None


_held_locks = threading.local()  # run directories this thread has locked
LOCK_TIMEOUT_ENV = "MEMRNN_LOCK_TIMEOUT"
LOCK_TIMEOUT = 24 * 3600  # seconds; a paper-scale training holds its run's lock for hours


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold an exclusive lock on a run directory (``.lock`` inside it) for the duration of the block.

    Training, fine-tuning and analyses that write a run take it, so two processes (two CLI calls, two
    campaign workers) never write one run at once: the second waits, saying so on stderr, then finds the
    first's results; after ``MEMRNN_LOCK_TIMEOUT`` seconds (default a day) it gives up with an error.
    The lock is an OS file lock, released by the kernel if its holder dies, so once it is held any
    ``.tmp`` file or folder left in the run is a dead writer's and is removed. A thread that already holds
    it passes straight through (a task that locks a run may call code that locks it again). The lock file
    must be a regular file: anything else (a FIFO, a link) is refused at once, never opened."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    held = _held_locks.__dict__.setdefault("paths", set())
    key = run_dir.resolve()
    if key in held:
        yield run_dir
        return
    timeout = _lock_timeout()
    with _open_lock(run_file(run_dir, ".lock")) as handle:
        _wait_for(handle, run_dir, timeout)
        _sweep(run_dir)
        held.add(key)
        try:
            yield run_dir
        finally:
            held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_lock(path: Path):
    """The lock file opened for locking, created if absent: never through a link, never blocking."""
    confine.refuse_unless_regular(path, "lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO):  # a link, or a special file put there since the check
            raise ValueError(f"{path} is not a regular file: refusing to lock it (remove it)") from None
        raise
    handle = os.fdopen(fd, "r+b")
    found = confine.kind(os.fstat(fd).st_mode)
    if found:
        handle.close()
        raise ValueError(f"{path} is {found}, not a regular file: refusing to lock it (remove it)")
    return handle


def _sweep(run_dir: Path) -> None:
    """Remove what dead writers left in a locked run: ``.*.tmp`` files, and folders (an unpacking's)."""
    folders = [run_dir]
    if os.path.isdir(run_file(run_dir, "checkpoints")):
        folders.append(run_dir / "checkpoints")
    for folder in folders:
        for stale in folder.glob(".*.tmp"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _lock_timeout() -> float:
    text = os.environ.get(LOCK_TIMEOUT_ENV, str(LOCK_TIMEOUT))
    try:
        timeout = float(text)
    except ValueError:
        timeout = math.nan
    if not timeout >= 0:
        raise ValueError(f"{LOCK_TIMEOUT_ENV}={text!r} is not a number of seconds")
    return timeout


def _wait_for(handle, run_dir: Path, timeout: float) -> None:
    """Take the lock on ``handle``, telling the user when another process holds it, up to ``timeout`` s."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    print(f"memrnn: waiting for another process to finish writing {run_dir} (at most {timeout:g} s, "
          f"set by {LOCK_TIMEOUT_ENV})", file=sys.stderr, flush=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{run_dir} is still being written by another process after {timeout:g} s "
                                   f"(a training or analysis of it is running): try again when it has finished") from None
            time.sleep(0.2)


def trained_step(run_dir: Path, step: int | None = None) -> int:
    """The checkpoint an analysis of ``run_dir`` uses: ``step`` if given and recorded, else the final
    one of a finished run. Refuses an unfinished run without an explicit step, so no result is ever
    computed from a checkpoint that training has not finished with; and verifies that checkpoint, so no
    cached result of a damaged run is ever served."""
    read_config(run_dir)
    steps = checkpoint_steps(run_dir)
    if step is not None:
        if step not in steps:
            raise ValueError(f"--step {step}: {run_dir} has no checkpoint at that step; have {steps}")
        load_checkpoint(run_dir, step)
        return step
    summary = read_summary(run_dir)
    if "train" not in summary:
        last = f"last checkpoint at step {steps[-1]}" if steps else "no checkpoint yet"
        raise ValueError(f"{run_dir} has not finished training ({last}): finish it with `memrnn train` "
                         "(same options), or pass an explicit --step where the command has one")
    final = summary["train"].get("steps") if isinstance(summary["train"], dict) else None
    if not isinstance(final, int):
        raise CorruptCheckpointError(f"{Path(run_dir) / SUMMARY_FILE} is corrupt: its train section has no step count")
    if not steps or steps[-1] != final:
        raise ValueError(f"{run_dir}: summary says training ended at step {final} but the checkpoints end at "
                         f"{steps[-1] if steps else None}; retrain with `memrnn train --fresh`")
    load_checkpoint(run_dir, final)
    return final


def update_summary(run_dir: Path, **sections) -> dict:
    """Merge ``sections`` into the run's JSON summary."""
    summary = read_summary(run_dir)
    summary.update(sections)
    write_json(run_file(run_dir, SUMMARY_FILE), summary)
    return summary
