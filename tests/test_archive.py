"""The trained-runs archive: packed deterministically, fetched over HTTP into a runs folder where the
runs load bit for bit as they were, refused when its hash or a member is wrong, never overwriting a run."""
import fcntl
import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import tarfile
import threading
from pathlib import Path

import pytest
import safetensors.torch
import torch

from memrnn import archive, chapter, store
from memrnn.archive import ArchiveError, fetch, pack
from memrnn.cli import main
from memrnn.evaluate import evaluate_run
from memrnn.formation import trace_run
from memrnn.presets import make_config
from memrnn.runs import load_run
from memrnn.slowpoints import analyse_run
from memrnn.train import train

ROOT = Path(__file__).resolve().parents[1]
SMOKE = make_config("smoke", steps=20, checkpoint_every=10, log_every=10)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs folder with one finished smoke run, its slow points and formation trace, and one unfinished run."""
    runs = tmp_path_factory.mktemp("archive") / "runs"
    run = train(SMOKE, runs, progress=False)
    analyse_run(run)
    trace_run(run, max_iter=5)
    train(make_config("smoke", steps=40, checkpoint_every=10, log_every=10), runs, progress=False, stop_after=10)
    return runs


@pytest.fixture(scope="module")
def run_name():
    return store.run_name(SMOKE)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        _Quiet.requests.append(self.path)
        super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(folder, base URL): files put in the folder are served on the loopback interface."""
    folder = tmp_path_factory.mktemp("served")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def published(runs, run_name, server):
    """The finished run packed and served: (url, sha256)."""
    folder, base = server
    sha = pack(runs, folder / "runs.tar.gz", [run_name])
    return f"{base}/runs.tar.gz", sha


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


def test_a_fetched_run_loads_with_the_same_weights_summary_and_results(runs, run_name, published, tmp_path):
    url, sha = published
    into = tmp_path / "fresh"
    assert fetch(url, sha, into, cache=tmp_path / "cache") == [run_name]
    original, fetched = runs / run_name, into / run_name
    final = store.trained_step(fetched)
    assert final == SMOKE.steps and store.checkpoint_steps(fetched) == store.checkpoint_steps(original) == [10, 20]
    mine, theirs = store.load_checkpoint(fetched, final), store.load_checkpoint(original, final)
    assert mine.keys() == theirs.keys()
    assert all(mine[k].dtype == theirs[k].dtype and torch.equal(mine[k], theirs[k]) for k in mine)
    _, model, _ = load_run(fetched, device="cpu")
    _, reference, _ = load_run(original, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert store.read_summary(fetched) == store.read_summary(original)
    for name in ("config.json", "metrics.json", "slowpoints.safetensors", "formation.json", "checkpoints/index.json"):
        assert (fetched / name).read_bytes() == (original / name).read_bytes(), name
    # cached results are served as they are, not recomputed from the missing earlier checkpoint
    assert analyse_run(fetched) == store.read_summary(original)["slowpoints"]
    assert trace_run(fetched, max_iter=5) == store.read_json(original / "formation.json")
    assert (fetched / "formation.json").read_bytes() == (original / "formation.json").read_bytes()
    # an earlier checkpoint is reported missing, never replaced
    assert not (fetched / "checkpoints" / "step_0000010.safetensors").exists()
    with pytest.raises(store.CorruptCheckpointError, match="step_0000010.safetensors is missing"):
        load_run(fetched, step=10, device="cpu")
    assert not list(into.glob(".fetch-*"))  # the unpacking folder is gone


def test_packing_twice_gives_the_same_bytes_and_only_what_chapters_read(runs, run_name, tmp_path):
    first, second = tmp_path / "a.tar.gz", tmp_path / "elsewhere" / "b.tgz"
    sha = pack(runs, first, [run_name])
    assert pack(runs, second, [run_name]) == sha == hashlib.sha256(first.read_bytes()).hexdigest()
    assert first.read_bytes() == second.read_bytes()
    members = _members(first)
    names = [m.name for m in members]
    assert names == sorted(names) and {m.mtime for m in members} == {0} and {m.uid for m in members} == {0}
    assert names == [f"{run_name}/{f}" for f in ("checkpoints/index.json", "checkpoints/step_0000020.safetensors",
                                                 "config.json", "formation.json", "metrics.json",
                                                 "slowpoints-lm-reference-reference.safetensors",  # the trace's start
                                                 "slowpoints.safetensors", "summary.json")]
    every = pack(runs, tmp_path / "all.tar.gz", checkpoints="all")  # default: every finished run (not the unfinished one)
    assert every != sha
    assert {m.name for m in _members(tmp_path / "all.tar.gz")} == set(names) | {
        f"{run_name}/checkpoints/step_0000010.safetensors"}


def test_packing_refuses_what_it_cannot_pack(runs, run_name, tmp_path):
    unfinished = next(p.name for p in runs.iterdir() if p.name != run_name)
    with pytest.raises(ValueError, match="has not finished training"):
        pack(runs, tmp_path / "a.tar.gz", [unfinished])
    with pytest.raises(ValueError, match=r"'nope' is not a run directory in .*finished runs there: " + run_name):
        pack(runs, tmp_path / "a.tar.gz", ["nope"])
    with pytest.raises(ValueError, match=r"checkpoints='some' is not allowed: choose one of \('final', 'all'\)"):
        pack(runs, tmp_path / "a.tar.gz", checkpoints="some")
    with pytest.raises(ValueError, match="not a tar.gz name"):
        pack(runs, tmp_path / "a.zip")
    assert not list(tmp_path.iterdir())


def test_a_wrong_hash_is_refused_naming_url_and_both_hashes(published, tmp_path):
    url, sha = published
    wrong = "0" * 64
    into = tmp_path / "runs"
    into.mkdir()
    (into / "mine.txt").write_text("kept")
    with pytest.raises(ArchiveError) as error:
        fetch(url, wrong, into, cache=tmp_path / "cache")
    message = str(error.value)
    assert url in message and f"SHA-256 {sha}, not the expected {wrong}" in message
    assert _listing(into) == ["mine.txt"]
    assert not _listing(tmp_path / "cache")  # the download was not kept
    with pytest.raises(ArchiveError):
        fetch(url, wrong, tmp_path / "absent", cache=tmp_path / "cache")
    assert not (tmp_path / "absent").exists()
    with pytest.raises(ValueError, match="'abc' is not a SHA-256: expected 64 hexadecimal digits"):
        fetch(url, "abc", into, cache=tmp_path / "cache")


def _evil(kind: str, run_name: str, outside: Path) -> tarfile.TarInfo:
    if kind == "symlink":
        info = tarfile.TarInfo(f"{run_name}/evil")
        info.type, info.linkname = tarfile.SYMTYPE, "../../outside"
    elif kind == "hardlink":
        info = tarfile.TarInfo(f"{run_name}/evil")
        info.type, info.linkname = tarfile.LNKTYPE, f"{run_name}/config.json"
    else:
        info = tarfile.TarInfo({"parent": f"{run_name}/../../outside", "absolute": str(outside),
                                "top-level": "outside", "deep": f"{run_name}/a/b/outside"}[kind])
        info.size = 4
    return info


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink", "hardlink", "top-level", "deep"])
def test_a_malicious_archive_is_refused_and_nothing_is_unpacked(kind, published, run_name, server, tmp_path):
    folder, base = server
    url, _ = published
    evil = folder / f"evil-{kind}.tar.gz"
    good = folder / "runs.tar.gz"
    with tarfile.open(good, "r:gz") as source, tarfile.open(evil, "w:gz") as tar:
        for member in source.getmembers():  # the good run first: it must not be added either
            tar.addfile(member, source.extractfile(member))
        bad = _evil(kind, run_name, tmp_path / "outside")
        tar.addfile(bad, io.BytesIO(b"evil") if bad.isfile() else None)
    into = tmp_path / "deep" / "runs"
    into.mkdir(parents=True)
    with pytest.raises(ArchiveError, match=f"member '{bad.name}' is"):
        fetch(f"{base}/{evil.name}", hashlib.sha256(evil.read_bytes()).hexdigest(), into, cache=tmp_path / "cache")
    assert _listing(into) == []
    assert not (tmp_path / "outside").exists() and not (tmp_path / "deep" / "outside").exists()


def test_an_existing_run_is_skipped_when_the_same_and_never_overwritten_when_not(runs, run_name, published, tmp_path):
    url, sha = published
    cache = tmp_path / "cache"
    assert fetch(url, sha, runs, cache=cache) == []  # the original (with every checkpoint) holds the same files
    into = tmp_path / "runs"
    shutil.copytree(runs / run_name, into / run_name)
    summary = into / run_name / "summary.json"
    summary.write_text(summary.read_text().replace('"run"', '"run" ', 1))  # results added to since: the same run
    assert fetch(url, sha, into, cache=cache) == []
    final = into / run_name / "checkpoints" / "step_0000020.safetensors"
    tensors = safetensors.torch.load(final.read_bytes())
    tensors["model/weight_hh"] += 1  # another final checkpoint, recorded in the index: another run
    final.write_bytes(safetensors.torch.save(tensors))
    index = json.loads((final.parent / "index.json").read_text())
    index["20"]["sha256"] = hashlib.sha256(final.read_bytes()).hexdigest()
    (final.parent / "index.json").write_text(json.dumps(index))
    before, listing = final.read_bytes(), _listing(into)
    with pytest.raises(ArchiveError, match=f"already holds 1 run.*{run_name}.*refusing to overwrite"):
        fetch(url, sha, into, cache=cache)
    assert final.read_bytes() == before and _listing(into) == listing
    with pytest.warns(UserWarning, match=f"kept 1 run.*{run_name}"):
        assert fetch(url, sha, into, cache=cache, keep_existing=True) == []
    assert final.read_bytes() == before
    assert not list(into.glob(".fetch-*"))


def test_the_command_line_packs_and_fetches_and_a_bad_hash_exits_2(runs, run_name, server, tmp_path, capsys,
                                                                    monkeypatch):
    folder, base = server
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = folder / "cli.tar.gz"
    assert main(["runs", "pack", str(out), "--runs", str(runs), run_name]) == 0
    sha, printed = capsys.readouterr().out.split()
    assert printed == str(out) and sha == hashlib.sha256(out.read_bytes()).hexdigest()
    into = tmp_path / "runs"
    assert main(["runs", "fetch", f"{base}/cli.tar.gz", "--sha256", sha, "--runs", str(into), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(into / run_name)
    assert store.trained_step(into / run_name) == SMOKE.steps
    assert main(["runs", "fetch", f"{base}/cli.tar.gz", "--sha256", sha, "--runs", str(into), "--quiet"]) == 0
    assert "nothing added" in capsys.readouterr().out
    wrong = "f" * 64
    assert main(["runs", "fetch", f"{base}/cli.tar.gz", "--sha256", wrong, "--runs", str(tmp_path / "other"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memrnn: error: runs: ") and err.count("\n") == 1, err
    assert f"{base}/cli.tar.gz" in err and sha in err and wrong in err
    assert not (tmp_path / "other").exists()
    with pytest.raises(SystemExit) as exit:
        main(["runs", "fetch", f"{base}/cli.tar.gz", "--sha256", "xyz"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and "'xyz' is not a SHA-256" in err
    with pytest.raises(SystemExit):
        main(["runs", "pack", str(tmp_path / "a.zip")])
    assert "not a tar.gz name" in capsys.readouterr().err


def test_chapters_fetch_the_published_runs_into_their_default_folder(run_name, published, tmp_path, monkeypatch):
    url, sha = published
    record = tmp_path / "runs-archive.json"
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert chapter.prepare_runs("../runs", on_colab=False, record=record) == "../runs"  # no record: nothing fetched
    assert _listing(tmp_path / "runs") == []
    record.write_text(json.dumps({"url": url, "sha256": sha, "runs": [run_name]}))
    assert chapter.prepare_runs("../runs", on_colab=False, record=record) == "../runs"  # turned off (conftest)
    assert _listing(tmp_path / "runs") == []
    monkeypatch.setenv("MEMRNN_FETCH_RUNS", "1")
    assert chapter.prepare_runs(str(tmp_path / "chosen"), on_colab=False, record=record)  # a folder chosen: left alone
    assert _listing(tmp_path / "chosen") == []
    _Quiet.requests.clear()
    chapter.prepare_runs("../runs", on_colab=False, record=record)
    assert store.trained_step(tmp_path / "runs" / run_name) == SMOKE.steps
    assert _Quiet.requests == ["/runs.tar.gz"]
    chapter.prepare_runs("../runs", on_colab=False, record=record)  # every recorded run there: nothing downloaded
    assert _Quiet.requests == ["/runs.tar.gz"]
    record.write_text(json.dumps({"url": url, "sha256": sha}))
    with pytest.raises(ValueError, match=r"runs-archive.json must hold \{\"url\""):
        chapter.prepare_runs("../runs", on_colab=False, record=record)


def test_a_failed_fetch_of_the_published_runs_lets_the_chapter_train(run_name, server, tmp_path, monkeypatch):
    _, base = server
    record = tmp_path / "runs-archive.json"
    record.write_text(json.dumps({"url": f"{base}/gone.tar.gz", "sha256": "0" * 64, "runs": [run_name]}))
    monkeypatch.setenv("MEMRNN_FETCH_RUNS", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match=f"could not use the published runs .*could not download {base}/gone.tar.gz"):
        assert archive.fetch_published(tmp_path / "runs", record, progress=False) == []


def test_the_record_travels_with_the_package():
    """Colab installs the package from git, without book/: the record must be package data."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert archive.RECORD.parent == ROOT / "memrnn"
    assert archive.RECORD.name in project["tool"]["setuptools"]["package-data"]["memrnn"]


def _served(folder: Path, name: str, members) -> tuple[str, str]:
    """Write a tar.gz of (TarInfo, bytes or None) members into the served folder: (its name, SHA-256)."""
    path = folder / name
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return name, hashlib.sha256(path.read_bytes()).hexdigest()


def _good_members(folder: Path):
    with tarfile.open(folder / "runs.tar.gz", "r:gz") as source:
        return [(m, source.extractfile(m).read()) for m in source.getmembers()]


def _file(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _hostile(kind: str, run_name: str, members):
    """An archive's members, hostile in one way; the good run's files first (none of them may be added)."""
    if kind == "bomb":  # 64 MiB of zeros in a few kilobytes
        return [*members, (_file(f"{run_name}/bomb.bin", 64 * 2**20), bytes(64 * 2**20))]
    if kind == "sparse":  # a GNU sparse member: a small entry that unpacks to a file of any size
        info = _file(f"{run_name}/sparse.bin", 0)
        info.type = tarfile.GNUTYPE_SPARSE
        return [*members, (info, None)]
    if kind == "extra":  # a file a packed run never holds
        return [*members, (_file(f"{run_name}/extra.bin", 4), b"evil")]
    summary = json.loads(dict((m.name, d) for m, d in members)[f"{run_name}/summary.json"])
    summary["slowpoints"]["file"] = {"file-parent": "../../x.safetensors", "file-absolute": "/etc/passwd"}[kind]
    data = json.dumps(summary).encode()
    return [(_file(m.name, len(data)), data) if m.name.endswith("summary.json") else (m, d) for m, d in members]


@pytest.mark.parametrize("kind, named", [("bomb", "unpacks to more than 16,777,216 bytes"),
                                         ("sparse", "is a sparse file"),
                                         ("extra", "holds extra.bin, which a packed run does not"),
                                         ("file-parent", "'../../x.safetensors', which is not a file of the run"),
                                         ("file-absolute", "'/etc/passwd', which is not a file of the run")])
def test_a_hostile_archive_with_the_right_hash_is_refused_and_removed_from_the_cache(
        kind, named, published, run_name, server, tmp_path):
    folder, base = server
    name, sha = _served(folder, f"hostile-{kind}.tar.gz", _hostile(kind, run_name, _good_members(folder)))
    into, cache = tmp_path / "runs", tmp_path / "cache"
    with pytest.raises(ArchiveError, match=re.escape(named)):
        fetch(f"{base}/{name}", sha, into, cache=cache)
    assert _listing(into) == [] and _listing(cache) == []  # nothing unpacked, nothing kept


class _Endless(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(bytes(2**16))
        except OSError:  # the client hung up
            pass


def test_an_endless_download_stops_at_its_cap_and_leaves_nothing(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/runs.tar.gz"
    try:
        with pytest.raises(ArchiveError, match=f"the archive at {re.escape(url)} is larger than 1,048,576 bytes"):
            fetch(url, "0" * 64, tmp_path / "runs", cache=tmp_path / "cache", max_bytes=2**20)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert _listing(tmp_path / "cache") == [] and not (tmp_path / "runs").exists()


def test_what_killed_fetches_and_packs_left_is_removed_by_the_next_but_not_a_live_ones(
        runs, run_name, published, tmp_path):
    url, sha = published
    into, cache = tmp_path / "runs", tmp_path / "cache"
    dead_staging, live_staging = into / ".fetch-dead.tmp", into / ".fetch-live.tmp"
    (dead_staging / run_name).mkdir(parents=True)
    (dead_staging / run_name / "config.json").write_text("{}")
    live_staging.mkdir()
    cache.mkdir()
    (cache / "tmpdead").write_bytes(b"partial download")
    (cache / "tmplive").write_bytes(b"a download in progress")
    out = tmp_path / "out.tar.gz"
    (tmp_path / ".out.tar.gz.dead.tmp").write_bytes(b"partial archive")
    (tmp_path / ".out.tar.gz.live.tmp").write_bytes(b"an archive being written")
    held = [os.open(p, os.O_RDONLY) for p in (live_staging, cache / "tmplive", tmp_path / ".out.tar.gz.live.tmp")]
    try:
        for fd in held:
            fcntl.flock(fd, fcntl.LOCK_EX)  # as a live fetch or pack holds what it writes
        assert fetch(url, sha, into, cache=cache) == [run_name]
        pack(runs, out, [run_name])
    finally:
        for fd in held:
            os.close(fd)
    assert sorted(p.name for p in into.iterdir()) == [".fetch-live.tmp", run_name]
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith("tmp")) == ["tmplive"]
    assert sorted(p.name for p in tmp_path.glob(".out*")) == [".out.tar.gz.live.tmp"]


def test_a_run_analysed_after_a_fetch_is_the_same_run_to_the_next_fetch(run_name, published, tmp_path):
    """A fetch killed after installing some runs, then an analysis of one: the next fetch carries on."""
    url, sha = published
    into, cache = tmp_path / "runs", tmp_path / "cache"
    assert fetch(url, sha, into, cache=cache) == [run_name]
    evaluate_run(into / run_name, [4, 30])
    assert fetch(url, sha, into, cache=cache) == []
    assert "extrapolation" in store.read_summary(into / run_name)
