"""Trained runs in one archive, so a fresh runtime (Colab, Binder, a new clone) can fetch the runs a
book execution used instead of training them again.

:func:`pack` writes run directories to a tar.gz whose bytes depend only on the runs (members in a fixed
order, fixed times, owners and modes, no name or time in the gzip header), so packing the same runs
twice gives the same file and SHA-256. Per run it holds what the chapters read: ``config.json``,
``summary.json``, ``metrics.json``, ``finetune.json``, ``formation.json`` and ``regularization.json``
where present, the analysis files the summary names (``slowpoints.safetensors``, ...), the checkpoint
index and the final checkpoint (``checkpoints="all"``: every checkpoint). The index is kept whole, so
``store.checkpoint_steps`` still lists the run's history and cached results computed from it (the
formation trace) stay valid; an earlier checkpoint that is not in the archive is reported as missing
by ``store.load_checkpoint``, never silently replaced: tracing formation again with other settings, or
any analysis of an earlier step, needs an archive packed with ``checkpoints="all"`` (or the run
retrained).

:func:`fetch` downloads an archive with pooch into a cache, checks its SHA-256, refuses any member that
is not a plain file or folder of a run directory, unpacks into a hidden folder inside the runs folder,
verifies each run there (its configuration hashes to its name, its final checkpoint to its index), and
only then moves the new runs into place. A run already present with the same files is skipped; one
that differs is never overwritten.

:func:`fetch_published` is the book's hook: when ``memrnn/runs-archive.json`` records a published
archive (``url``, ``sha256``, ``runs``) and the runs folder lacks some of its runs, it fetches them.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import warnings
import zlib
from pathlib import Path, PurePosixPath

from . import store
from .formation import FORMATION_FILE
from .regularize import FINETUNE_FILE, REGULARIZATION_FILE

CHECKPOINTS = ("final", "all")
SUFFIXES = (".tar.gz", ".tgz")
# the files of a run that chapters read, besides checkpoints and the analysis files its summary names
RESULT_FILES = (store.CONFIG_FILE, store.SUMMARY_FILE, store.METRICS_FILE, FINETUNE_FILE, FORMATION_FILE,
                REGULARIZATION_FILE)
REQUIRED_FILES = (store.CONFIG_FILE, store.SUMMARY_FILE, store.METRICS_FILE)
# the published archive the book fetches from, when the repository records one
RECORD = Path(__file__).with_name("runs-archive.json")
FETCH_ENV = "MEMRNN_FETCH_RUNS"  # "0": never fetch the published archive, train instead


class ArchiveError(RuntimeError):
    """An archive that cannot be used: wrong hash, unsafe or damaged member, or a run that would be
    overwritten. Nothing has been added to the runs folder when it is raised."""


def pack(runs_dir: Path, out_path: Path, run_names: list[str] | None = None, checkpoints: str = "final") -> str:
    """Write the runs ``run_names`` of ``runs_dir`` (default: every finished run there; unfinished ones,
    still training say, are left out) to the tar.gz ``out_path``; returns its SHA-256.

    Each run must be finished and verify (configuration, final checkpoint); it is read under its lock,
    so an analysis writing it meanwhile is waited for. ``checkpoints``: ``"final"`` or ``"all"``."""
    runs_dir, out = Path(runs_dir), Path(out_path)
    if checkpoints not in CHECKPOINTS:
        raise ValueError(f"checkpoints={checkpoints!r} is not allowed: choose one of {CHECKPOINTS}")
    if not out.name.endswith(SUFFIXES):
        raise ValueError(f"{out} is not a tar.gz name: give a file name ending in {' or '.join(SUFFIXES)}")
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs folder {runs_dir} does not exist or is not a directory")
    names = _finished_runs(runs_dir) if run_names is None else _named_runs(runs_dir, run_names)
    if not names:
        raise ValueError(f"{runs_dir} holds no finished run to pack")
    _write_tar(out, _members(runs_dir, names, checkpoints))
    return file_sha256(out)


def _finished_runs(runs_dir: Path) -> list[str]:
    return sorted(p.name for p in runs_dir.iterdir()
                  if not p.name.startswith(".") and p.is_dir() and not p.is_symlink()
                  and (p / store.CONFIG_FILE).exists() and "train" in store.read_summary(p))


def _named_runs(runs_dir: Path, run_names: list[str]) -> list[str]:
    for name in run_names:
        path = runs_dir / name
        if not _plain_name(name) or path.is_symlink() or not (path / store.CONFIG_FILE).exists():
            raise ValueError(f"{name!r} is not a run directory in {runs_dir}: give the name of one "
                             f"(finished runs there: {_few(_finished_runs(runs_dir)) or 'none'})")
    return sorted(set(run_names))


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _plain_name(name: str) -> bool:
    """A file or folder name of its own: no separator, not hidden, not '.' or '..'."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def _members(runs_dir: Path, names: list[str], checkpoints: str):
    """(archive name, bytes) of every packed file, run by run, each run read under its lock."""
    for name in names:
        run_dir = runs_dir / name
        with store.run_lock(run_dir):
            for relative, data in _run_files(run_dir, checkpoints):
                yield f"{name}/{relative}", data


def _run_files(run_dir: Path, checkpoints: str) -> list[tuple[str, bytes]]:
    final = store.trained_step(run_dir)  # refuses an unfinished run, verifies configuration and final checkpoint
    summary = store.read_summary(run_dir)
    missing = [f for f in REQUIRED_FILES if not (run_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"{run_dir} lacks {', '.join(missing)}: retrain it with `memrnn train --fresh`")
    files = {f: _regular_bytes(run_dir / f) for f in (*RESULT_FILES, *_analysis_files(run_dir, summary))
             if (run_dir / f).exists()}
    files[store.INDEX_FILE] = _regular_bytes(run_dir / store.INDEX_FILE)
    for step in store.checkpoint_steps(run_dir) if checkpoints == "all" else [final]:
        path, data = store.checkpoint_file(run_dir, step)
        files[f"checkpoints/{path.name}"] = data
    return sorted(files.items())


def _analysis_files(run_dir: Path, summary: dict) -> list[str]:
    """The result files the summary's sections name (``"file": ...``), each checked to be a file of the run."""
    names = []
    for section, value in summary.items():
        if not isinstance(value, dict) or "file" not in value:
            continue
        name = value["file"]
        if not isinstance(name, str) or not _plain_name(name):
            raise ValueError(f"{run_dir / store.SUMMARY_FILE}: section {section!r} names {name!r}, which is not a "
                             "file of the run")
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / store.SUMMARY_FILE}: section {section!r} names {name}, which is "
                                    f"missing: run that analysis of {run_dir} again before packing it")
        names.append(name)
    return names


def _regular_bytes(path: Path) -> bytes:
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise ValueError(f"{path} is not a regular file (a link, say): refusing to pack it")
    return path.read_bytes()


def _write_tar(out: Path, members) -> None:
    """Write ``members`` so that a failure leaves no partial archive under the real name."""
    if out.is_dir():
        raise ValueError(f"{out} is a directory: give a file name for the archive")
    with store.atomic_file(out) as raw:
        # no file name and time 0 in the gzip header, fixed fields in every tar header
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as compressed, \
                tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(text: str) -> str:
    """``text`` as a lower-case SHA-256, refusing anything but 64 hexadecimal digits."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise ValueError(f"{text!r} is not a SHA-256: expected 64 hexadecimal digits")
    return text.lower()


def fetch(url: str, sha256: str, runs_dir: Path, cache: Path | None = None, keep_existing: bool = False,
          progress: bool = False) -> list[str]:
    """Download the archive at ``url`` (kept in ``cache``, default the user cache memrnn's datasets use),
    check it against ``sha256`` and unpack its runs into ``runs_dir``; returns the names of the runs added.

    A run already in ``runs_dir`` holding the archive's files unchanged is skipped. One that differs is
    refused (nothing is added), or with ``keep_existing`` left as it is, with a warning."""
    from .data import cache_dir

    sha256, runs_dir = check_sha256(sha256), Path(runs_dir)
    path = _download(url, sha256, Path(cache) if cache else cache_dir("runs-archives"), progress)
    names = _check_members(path, url)
    runs_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=runs_dir, prefix=".fetch-", suffix=".tmp"))
    try:
        _unpack(path, url, staging)
        for name in names:
            _verify_run(staging / name, url)
        present = [n for n in names if os.path.lexists(runs_dir / n)]
        differing = [n for n in present if not _holds_same(runs_dir / n, staging / n)]
        if differing and not keep_existing:
            raise ArchiveError(f"{runs_dir} already holds {len(differing)} run(s) that differ from the archive's "
                               f"copies ({_few(differing)}): "
                               "refusing to overwrite them; move them away to fetch the archive's")
        if differing:
            warnings.warn(f"kept {len(differing)} run(s) of {runs_dir} that differ from the archive's copies "
                          f"({_few(differing)})", stacklevel=2)
        added = [n for n in names if n not in present]
        for name in added:
            os.rename(staging / name, runs_dir / name)
        return added
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(url: str, sha256: str, cache: Path, progress: bool) -> Path:
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    if not progress:  # quiet: nor pooch's "Downloading data from ..." lines
        logger.setLevel("WARNING")
    try:
        return Path(pooch.retrieve(url, known_hash=f"sha256:{sha256}", path=cache, progressbar=progress))
    except ValueError as e:  # pooch's hash mismatch (it has deleted the download), or an address it cannot fetch
        if "hash" not in str(e):
            raise ArchiveError(f"could not download {url}: {e}") from None
        found = re.search(r"but got ([0-9a-fA-F]{64})", str(e))
        actual = found.group(1) if found else f"another ({e})"
        raise ArchiveError(f"the archive at {url} has SHA-256 {actual}, not the expected {sha256}: nothing was "
                           "unpacked (the file at that address changed, or the hash given is wrong)") from None
    except OSError as e:  # network errors and HTTP error statuses
        raise ArchiveError(f"could not download {url}: {e}") from None
    finally:
        logger.setLevel(level)


def _check_members(path: Path, url: str) -> list[str]:
    """The run names of the archive, after checking that every member is a regular file (or folder)
    at ``RUN/FILE`` or ``RUN/checkpoints/FILE``, named once."""
    seen, runs = set(), set()
    try:
        with _open(path, url) as tar:
            for member in tar:
                runs.add(_member_run(member, url))
                if member.name in seen:
                    raise ArchiveError(f"{url}: member {member.name!r} appears twice in the archive: refusing it")
                seen.add(member.name)
    except _DAMAGED as e:
        raise ArchiveError(f"{url}: not a readable tar.gz archive ({e})") from None
    if not runs:
        raise ArchiveError(f"{url}: the archive holds no run")
    return sorted(runs)


def _member_run(member: tarfile.TarInfo, url: str) -> str:
    """The run a member belongs to; refuses links, devices, absolute paths, '..' and anything outside a run."""
    name = member.name
    parts = PurePosixPath(name).parts
    if not (member.isfile() or member.isdir()):
        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "a device or FIFO"
        raise ArchiveError(f"{url}: member {name!r} is {kind}: only regular files and folders are allowed")
    if name.startswith("/") or not parts or not all(_plain_name(p) for p in parts):
        raise ArchiveError(f"{url}: member {name!r} is not a relative path of plain names (no '/' first, no '..', "
                           "'.' or hidden names): refusing the archive")
    depth_ok = len(parts) == 2 or (len(parts) == 3 and parts[1] == "checkpoints") or member.isdir()
    if len(parts) > 3 or not depth_ok or (len(parts) == 1 and member.isfile()):
        raise ArchiveError(f"{url}: member {name!r} is not a file of a run directory (RUN/FILE or "
                           "RUN/checkpoints/FILE): refusing the archive")
    return parts[0]


_DAMAGED = (tarfile.TarError, OSError, EOFError, zlib.error)  # what a truncated or garbled tar.gz raises


def _open(path: Path, url: str):
    """The archive read as a stream: each member once, in order (seeking back would decompress again)."""
    try:
        return tarfile.open(path, "r|gz")
    except _DAMAGED as e:
        raise ArchiveError(f"{url}: not a readable tar.gz archive ({e})") from None


def _unpack(path: Path, url: str, staging: Path) -> None:
    """Write the archive's files under ``staging``; every member is checked again as it is read."""
    try:
        with _open(path, url) as tar:
            for member in tar:
                _member_run(member, url)
                target = staging / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "xb") as copy:
                    shutil.copyfileobj(source, copy)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise ArchiveError(f"{url}: the archive is damaged ({e})") from None


def _verify_run(run_dir: Path, url: str) -> None:
    try:
        store.read_config(run_dir)
        store.trained_step(run_dir)
    except (OSError, ValueError, KeyError, store.CorruptCheckpointError) as e:
        raise ArchiveError(f"{url}: run {run_dir.name} in the archive does not verify ({e}): refusing the "
                           "archive") from None


def _holds_same(existing: Path, staged: Path) -> bool:
    """Whether ``existing`` is a run directory holding every file of ``staged`` with the same bytes
    (files it has beyond those, earlier checkpoints say, do not matter)."""
    if existing.is_symlink() or not existing.is_dir():
        return False
    for folder, _, files in os.walk(staged):
        for file in files:
            relative = Path(folder, file).relative_to(staged)
            mine = existing / relative
            if mine.is_symlink() or not mine.is_file() or mine.read_bytes() != (staged / relative).read_bytes():
                return False
    return True


def read_record(path: Path = RECORD) -> dict | None:
    """The published archive recorded in ``path`` ({"url", "sha256", "runs"}), or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    record = store.read_json(path, dict)
    runs, sha256 = record.get("runs"), record.get("sha256")
    if not (isinstance(record.get("url"), str) and isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)
            and isinstance(runs, list) and runs and all(isinstance(r, str) and _plain_name(r) for r in runs)):
        raise ValueError(f"{path} must hold {{\"url\": \"https://...\", \"sha256\": \"<64 lower-case hex digits>\", "
                         f"\"runs\": [\"<run name>\", ...]}}; it holds {json.dumps(record)[:120]}")
    return record


def fetch_published(runs_dir: Path, record: Path = RECORD, progress: bool = True) -> list[str]:
    """Fetch the recorded archive's runs into ``runs_dir`` when it lacks any of them (runs already there
    are kept); returns the runs added. Without a record, or with ``MEMRNN_FETCH_RUNS=0``, does nothing.
    A failed fetch is reported and the chapter carries on: it trains what it needs, as without a record."""
    published = read_record(record)
    if published is None or os.environ.get(FETCH_ENV) == "0":
        return []
    missing = [n for n in published["runs"] if not (Path(runs_dir) / n / store.SUMMARY_FILE).exists()]
    if not missing:
        return []
    print(f"fetching {len(missing)} trained run(s) missing from {runs_dir} from {published['url']} "
          f"(set {FETCH_ENV}=0 to train them instead)", flush=True)
    try:
        return fetch(published["url"], published["sha256"], runs_dir, keep_existing=True, progress=progress)
    except ArchiveError as e:
        warnings.warn(f"could not use the published runs ({e}); what is missing will be trained", stacklevel=2)
        return []
