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

:func:`fetch` downloads an archive with pooch into a cache (at most ``max_bytes``), checks its SHA-256,
refuses any member that is not a plain (not sparse) file or folder of a run directory, unpacks into a
hidden folder inside the runs folder (at most ``max_unpacked`` bytes, by default a few times the
archive's size: a compressed bomb is refused before it fills the disk), checks each run there as
:func:`pack` checks what it packs (its configuration hashes to its name, its checkpoints to its index,
it holds no file that a packed run does not), and only then moves the new runs into place. A run
already present with the same final checkpoint is skipped (its results may have been added to since);
one that differs is never overwritten. A refused archive is removed from the cache; what a killed fetch
left (its unpacking folder, a partial download) is removed by the next fetch.

:func:`fetch_published` is the book's hook: when ``memrnn/runs-archive.json`` records a published
archive (``url``, ``sha256``, ``runs``) and the runs folder lacks some of its runs, it fetches them.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import warnings
import zlib
from pathlib import Path, PurePosixPath

from . import confine, store
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
MAX_BYTES = 16 * 2**30  # the largest download by default: over three times the book's cpu runs with every checkpoint
# unpacked, an archive may take this many times its size by default (packed runs take about 1.1 times)
UNPACKED_FACTOR = 4
MIN_UNPACKED = 16 * 2**20  # ... or this much, for a small archive of mostly JSON


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
                  and _is_file(p, store.CONFIG_FILE) and "train" in store.read_summary(p))


def _is_file(run_dir: Path, relative: str) -> bool:
    """Whether the run holds ``relative`` (checked not to lead out of it)."""
    return os.path.lexists(store.run_file(run_dir, relative))


def _named_runs(runs_dir: Path, run_names: list[str]) -> list[str]:
    for name in run_names:
        path = runs_dir / name
        if not _plain_name(name) or path.is_symlink() or not path.is_dir() or not _is_file(path, store.CONFIG_FILE):
            raise ValueError(f"{name!r} is not a run directory in {runs_dir}: give the name of one "
                             f"(finished runs there: {_few(_finished_runs(runs_dir)) or 'none'})")
    return sorted(set(run_names))


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


_plain_name = confine.plain_name


def _members(runs_dir: Path, names: list[str], checkpoints: str):
    """(archive name, bytes) of every packed file, run by run, each run read under its lock."""
    for name in names:
        run_dir = runs_dir / name
        with store.run_lock(run_dir):
            for relative, data in _run_files(run_dir, checkpoints):
                yield f"{name}/{relative}", data


def _run_files(run_dir: Path, checkpoints: str) -> list[tuple[str, bytes]]:
    final = _check_run(run_dir)
    summary = store.read_summary(run_dir)
    files = {f: _regular_bytes(store.run_file(run_dir, f)) for f in (*RESULT_FILES, *_analysis_files(run_dir, summary))
             if _is_file(run_dir, f)}
    files[store.INDEX_FILE] = _regular_bytes(store.run_file(run_dir, store.INDEX_FILE))
    for step in store.checkpoint_steps(run_dir) if checkpoints == "all" else [final]:
        path, data = store.checkpoint_file(run_dir, step)
        files[f"checkpoints/{path.name}"] = data
    return sorted(files.items())


def _check_run(run_dir: Path) -> int:
    """The final step of a run that may be packed or installed: finished, its configuration and final
    checkpoint verified, its required files present; refused otherwise."""
    final = store.trained_step(run_dir)  # refuses an unfinished run, verifies configuration and final checkpoint
    missing = [f for f in REQUIRED_FILES if not _is_file(run_dir, f)]
    if missing:
        raise FileNotFoundError(f"{run_dir} lacks {', '.join(missing)}: retrain it with `memrnn train --fresh`")
    return final


def _packable(run_dir: Path) -> set[str]:
    """Every file a packed copy of the run may hold: its result files, the analysis files its summary
    names, the checkpoint index and the checkpoints it lists."""
    names = {*RESULT_FILES, *_analysis_files(run_dir, store.read_summary(run_dir)), store.INDEX_FILE}
    return names | {f"checkpoints/step_{int(step):07d}.safetensors" for step in store.checkpoint_steps(run_dir)}


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
        if not _is_file(run_dir, name):
            raise FileNotFoundError(f"{run_dir / store.SUMMARY_FILE}: section {section!r} names {name}, which is "
                                    f"missing: run that analysis of {run_dir} again before packing it")
        names.append(name)
    return names


def _regular_bytes(path: Path) -> bytes:
    try:
        return confine.read_regular(path)
    except ValueError as e:
        raise ValueError(f"{e} (a run is packed only from its own regular files)") from None


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
          progress: bool = False, max_bytes: int = MAX_BYTES, max_unpacked: int | None = None) -> list[str]:
    """Download the archive at ``url`` (kept in ``cache``, default the user cache memrnn's datasets use,
    a folder of its own), check it against ``sha256`` and unpack its runs into ``runs_dir``; returns the
    names of the runs added.

    At most ``max_bytes`` are downloaded and ``max_unpacked`` unpacked (default ``UNPACKED_FACTOR`` times
    the archive's size, at least ``MIN_UNPACKED``). A run already in ``runs_dir`` with the archive's final
    checkpoint is skipped. One that differs is refused (nothing is added), or with ``keep_existing``
    left as it is, with a warning."""
    from .data import cache_dir

    sha256, runs_dir = check_sha256(sha256), Path(runs_dir)
    for name, value in (("max_bytes", max_bytes), ("max_unpacked", max_unpacked)):
        if value is not None and not (isinstance(value, int) and value > 0):
            raise ValueError(f"{name}={value!r} is not allowed: expected a positive number of bytes")
    cache = Path(cache) if cache else cache_dir("runs-archives")
    cache.mkdir(parents=True, exist_ok=True)
    for partial in cache.glob("tmp*"):  # pooch's partial downloads: a killed fetch's are removed
        store.remove_if_dead(partial)
    path = _download(url, sha256, cache, progress, max_bytes)
    runs_dir.mkdir(parents=True, exist_ok=True)
    for stale in runs_dir.glob(".fetch-*.tmp"):  # a killed fetch's unpacking folders
        store.remove_if_dead(stale)
    staging, held = _staging(runs_dir)
    try:
        try:
            limit = max_unpacked or max(UNPACKED_FACTOR * path.stat().st_size, MIN_UNPACKED)
            names = _check_members(path, url, limit)
            _unpack(path, url, staging, limit)
            for name in names:
                _verify_run(staging / name, url)
        except ArchiveError:
            path.unlink(missing_ok=True)  # a refused archive is not kept
            raise
        return _install(names, staging, runs_dir, keep_existing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(held)


def _staging(runs_dir: Path) -> tuple[Path, int]:
    """A new hidden unpacking folder in ``runs_dir``, held (see ``store.hold``) while this fetch lives."""
    while True:
        staging = Path(tempfile.mkdtemp(dir=runs_dir, prefix=".fetch-", suffix=".tmp"))
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if store.hold(fd):
            return staging, fd


def _install(names: list[str], staging: Path, runs_dir: Path, keep_existing: bool) -> list[str]:
    """Move the staged runs absent from ``runs_dir`` into it; returns their names."""
    present = [n for n in names if os.path.lexists(runs_dir / n)]
    differing = [n for n in present if not _holds_same(runs_dir / n, staging / n)]
    if differing and not keep_existing:
        raise ArchiveError(f"{runs_dir} already holds {len(differing)} run(s) that differ from the archive's "
                           f"copies ({_few(differing)}): "
                           "refusing to overwrite them; move them away to fetch the archive's")
    if differing:
        warnings.warn(f"kept {len(differing)} run(s) of {runs_dir} that differ from the archive's copies "
                      f"({_few(differing)})", stacklevel=3)
    added = [n for n in names if n not in present]
    for name in added:
        os.rename(staging / name, runs_dir / name)
    return added


class _Capped:
    """A file that refuses to grow past ``limit`` bytes: where a download is written."""

    def __init__(self, file, limit: int, url: str):
        self.file, self.left, self.limit, self.url = file, limit, limit, url

    def write(self, data: bytes) -> int:
        self.left -= len(data)
        if self.left < 0:
            raise ArchiveError(f"the archive at {self.url} is larger than {self.limit:,} bytes: refusing to download "
                               "more (give a larger --max-bytes if it should be that large)")
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _download(url: str, sha256: str, cache: Path, progress: bool, max_bytes: int) -> Path:
    import pooch

    def capped(address, output_file, pooch_):
        """pooch's download into its temporary file, held while written (a later fetch removes it if
        this one is killed) and capped at ``max_bytes``."""
        while True:
            fd = os.open(output_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            if store.hold(fd):
                break
        with os.fdopen(fd, "wb") as file:
            pooch.downloaders.choose_downloader(address, progressbar=progress)(
                address, _Capped(file, max_bytes, url), pooch_)

    logger = pooch.get_logger()
    level = logger.level
    if not progress:  # quiet: nor pooch's "Downloading data from ..." lines
        logger.setLevel("WARNING")
    try:
        return Path(pooch.retrieve(url, known_hash=f"sha256:{sha256}", path=cache, progressbar=progress,
                                   downloader=capped))
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


def _check_members(path: Path, url: str, limit: int) -> list[str]:
    """The run names of the archive, after checking that every member is a regular file (or folder)
    at ``RUN/FILE`` or ``RUN/checkpoints/FILE``, named once, and that together they fit in ``limit``
    bytes (read no further than that)."""
    seen, runs, total = set(), set(), 0
    try:
        with _open(path, url, limit) as tar:
            for member in tar:
                runs.add(_member_run(member, url))
                if member.name in seen:
                    raise ArchiveError(f"{url}: member {member.name!r} appears twice in the archive: refusing it")
                seen.add(member.name)
                total += member.size
                if total > limit:
                    raise _too_large(url, limit)
    except _DAMAGED as e:
        raise ArchiveError(f"{url}: not a readable tar.gz archive ({e})") from None
    if not runs:
        raise ArchiveError(f"{url}: the archive holds no run")
    return sorted(runs)


def _too_large(url: str, limit: int) -> ArchiveError:
    return ArchiveError(f"{url}: the archive unpacks to more than {limit:,} bytes: refusing it (give a larger "
                        "--max-unpacked if its runs are that large)")


def _member_run(member: tarfile.TarInfo, url: str) -> str:
    """The run a member belongs to; refuses links, devices, sparse files, absolute paths, '..' and anything
    outside a run."""
    name = member.name
    parts = PurePosixPath(name).parts
    if not (member.isfile() or member.isdir()):
        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "a device or FIFO"
        raise ArchiveError(f"{url}: member {name!r} is {kind}: only regular files and folders are allowed")
    if member.issparse():  # a few bytes that unpack to a file of any size: pack never writes one
        raise ArchiveError(f"{url}: member {name!r} is a sparse file: only regular files and folders are allowed")
    if name.startswith("/") or not parts or not all(_plain_name(p) for p in parts):
        raise ArchiveError(f"{url}: member {name!r} is not a relative path of plain names (no '/' first, no '..', "
                           "'.' or hidden names): refusing the archive")
    depth_ok = len(parts) == 2 or (len(parts) == 3 and parts[1] == "checkpoints") or member.isdir()
    if len(parts) > 3 or not depth_ok or (len(parts) == 1 and member.isfile()):
        raise ArchiveError(f"{url}: member {name!r} is not a file of a run directory (RUN/FILE or "
                           "RUN/checkpoints/FILE): refusing the archive")
    return parts[0]


_DAMAGED = (tarfile.TarError, OSError, EOFError, zlib.error)  # what a truncated or garbled tar.gz raises


class _Budget(io.RawIOBase):
    """The decompressed archive, of which at most ``limit`` bytes are read: a bomb stops there."""

    def __init__(self, raw, limit: int, url: str):
        self.raw, self.left, self.limit, self.url = raw, limit, limit, url

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.left -= n
        if self.left < 0:
            raise _too_large(self.url, self.limit)
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


# a tar adds headers and padding to its files' bytes: a packed archive's members fill this share of it
TAR_OVERHEAD = 2


@contextlib.contextmanager
def _open(path: Path, url: str, limit: int):
    """The archive read as a stream: each member once, in order (seeking back would decompress again),
    and no more than its members' ``limit`` bytes with the tar's headers and padding."""
    with io.BufferedReader(_Budget(gzip.open(path), TAR_OVERHEAD * limit + 2**20, url)) as stream:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")
        except _DAMAGED as e:
            raise ArchiveError(f"{url}: not a readable tar.gz archive ({e})") from None
        with tar:
            yield tar


def _unpack(path: Path, url: str, staging: Path, limit: int) -> None:
    """Write the archive's files under ``staging``; every member is checked again as it is read, and one
    that would take the unpacked files past ``limit`` bytes is refused before anything of it is written."""
    left = limit
    try:
        with _open(path, url, limit) as tar:
            for member in tar:
                _member_run(member, url)
                target = staging / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                left -= member.size
                if left < 0:
                    raise _too_large(url, limit)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "xb") as copy:
                    shutil.copyfileobj(source, copy)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise ArchiveError(f"{url}: the archive is damaged ({e})") from None


def _verify_run(run_dir: Path, url: str) -> None:
    """Check an unpacked run as :func:`pack` checks what it packs, and that it holds nothing else."""
    try:
        _check_run(run_dir)
        store.checkpoint_hashes(run_dir)  # every checkpoint it holds matches the index
        allowed = _packable(run_dir)
    except (OSError, ValueError, KeyError, store.CorruptCheckpointError) as e:
        raise ArchiveError(f"{url}: run {run_dir.name} in the archive does not verify ({e}): refusing the "
                           "archive") from None
    held = set()
    for folder, folders, files in os.walk(run_dir):
        here = Path(folder).relative_to(run_dir)
        held |= {str(here / f) for f in files} | {f"{here / d}/" for d in folders}  # a folder named with its "/"
    stray = sorted(held - allowed - {"checkpoints/"})
    if stray:
        raise ArchiveError(f"{url}: run {run_dir.name} in the archive holds {_few(stray)}, which a packed run does "
                           "not (only its result files, the analysis files its summary names and its indexed "
                           "checkpoints): refusing the archive")


def _holds_same(existing: Path, staged: Path) -> bool:
    """Whether ``existing`` is the archive's run: a run directory whose training ended at the archive's
    final checkpoint, same step and SHA-256. Its other files may differ (analyses run on it since, say):
    the results cached in a run are those of its final checkpoint."""
    if existing.is_symlink() or not existing.is_dir():
        return False
    try:
        final = store.trained_step(existing)
        return final == store.trained_step(staged) and \
            store.checkpoint_sha256(existing, final) == store.checkpoint_sha256(staged, final)
    except (OSError, ValueError, KeyError, store.CorruptCheckpointError):
        return False


def read_record(path: Path = RECORD) -> dict | None:
    """The published archive recorded in ``path`` ({"url", "sha256", "runs"}, and optionally its size in
    "bytes", which then caps the download), or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    record = store.read_json(path, dict)
    runs, sha256 = record.get("runs"), record.get("sha256")
    if not (isinstance(record.get("url"), str) and isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)
            and isinstance(runs, list) and runs and all(isinstance(r, str) and _plain_name(r) for r in runs)
            and (type(record.get("bytes", 1)) is int and record.get("bytes", 1) > 0)):
        raise ValueError(f"{path} must hold {{\"url\": \"https://...\", \"sha256\": \"<64 lower-case hex digits>\", "
                         f"\"runs\": [\"<run name>\", ...]}} and optionally \"bytes\": <the archive's size>; it holds "
                         f"{json.dumps(record)[:120]}")
    return record


def fetch_published(runs_dir: Path, record: Path = RECORD, progress: bool = True) -> list[str]:
    """Fetch the recorded archive's runs into ``runs_dir`` when it lacks any of them (runs already there
    are kept); returns the runs added. Without a record, or with ``MEMRNN_FETCH_RUNS=0``, does nothing.
    A failed fetch is reported and the chapter carries on: it trains what it needs, as without a record."""
    published = read_record(record)
    if published is None or os.environ.get(FETCH_ENV) == "0":
        return []
    missing = [n for n in published["runs"] if not os.path.lexists(Path(runs_dir) / n / store.SUMMARY_FILE)]
    if not missing:
        return []
    print(f"fetching {len(missing)} trained run(s) missing from {runs_dir} from {published['url']} "
          f"(set {FETCH_ENV}=0 to train them instead)", flush=True)
    try:
        return fetch(published["url"], published["sha256"], runs_dir, keep_existing=True, progress=progress,
                     max_bytes=published.get("bytes", MAX_BYTES))
    except ArchiveError as e:
        warnings.warn(f"could not use the published runs ({e}); what is missing will be trained", stacklevel=2)
        return []
