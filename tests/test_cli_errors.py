"""Bad input and damaged files over every subcommand: exit 2, one line naming the bad thing, no
traceback, no file changed."""
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save

from memrnn import store
from memrnn.cli import main
from memrnn.evaluate import evaluate_run
from memrnn.formation import trace_run
from memrnn.presets import make_config
from memrnn.slowpoints import analyse_run
from memrnn.train import train

SMOKE = make_config("smoke", steps=20, checkpoint_every=10, log_every=10)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One finished smoke run, one unfinished one, and damaged copies of the finished one."""
    root = tmp_path_factory.mktemp("errors")
    run = train(SMOKE, root / "runs", progress=False)
    unfinished = train(make_config("smoke", steps=40, checkpoint_every=10, log_every=10), root / "runs",
                       progress=False, stop_after=20)
    (root / "plain").mkdir()
    (root / "file.txt").write_text("not a directory")

    def copy(name):
        shutil.copytree(run, root / name / run.name)
        return root / name / run.name

    json.loads((copy("badtype") / "config.json").read_text())
    (root / "badtype" / run.name / "config.json").write_text(json.dumps({**vars(SMOKE), "seeds": "two"}))
    (copy("badsummary") / "summary.json").write_text('{"train": ')
    final = copy("truncated") / "checkpoints" / "step_0000020.safetensors"
    final.write_bytes(final.read_bytes()[:64])
    mixed = copy("mixed")
    summary = store.read_json(mixed / "summary.json")
    summary["extrapolation"] = {"checkpoint_step": 20, "delays": [100], "accuracy": [[[0.5] * 10] * 1] * 2}
    summary["slowpoints"] = {"checkpoint_step": 10, "member_seeds": [0, 1], "speed": [[1e-3] * 10] * 2,
                             "decoded_class": [list(range(10))] * 2, "in_region": [[True] * 10] * 2}
    store.write_json(mixed / "summary.json", summary)
    garbled = copy("garbled")
    analyse_run(garbled)
    analyse_run(garbled, search="lm")  # where a formation trace starts
    for name in ("slowpoints.safetensors", "slowpoints-lm-reference-reference.safetensors"):
        (garbled / name).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbled")
    data = root / "data"
    data.mkdir()
    (data / "mnist_5k.csv.gz").write_bytes(gzip.compress(b"1,2,3\nx,y\n")[:-6])
    (data / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b\x08 broken")
    (data / "mnist").mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data / "mnist" / f"{stem}.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip")
    _damaged_caches(root, copy("cached"))
    narrow = train(make_config("smoke", steps=20, checkpoint_every=10, log_every=10, hidden_size=8), root / "narrow",
                   progress=False)
    shutil.copy(narrow / "checkpoints" / FINAL, copy("reshaped") / "checkpoints" / FINAL)
    _reindex(root / "reshaped" / run.name)
    foreign = copy("foreign")
    (foreign / "config.json").write_text(json.dumps({**vars(SMOKE), "lr": 1e-2}))
    shutil.copytree(run, root / "renamed" / "synthetic-gru-none-0123456789ab")
    for name, text in (("null", "null"), ("list", "[]"), ("number", '{"train": 5}'), ("text", '"x"')):
        (copy(f"summary-{name}") / "summary.json").write_text(text)
    complete = copy("complete")
    evaluate_run(complete, [4, 30])
    analyse_run(complete)
    _hostile_runs(root, copy, complete)
    os.mkfifo(root / "fifo")
    (root / "target.json").write_text("{}")
    (root / "link.json").symlink_to(root / "target.json")
    if os.geteuid() == 0:  # a character device of our own, never a system one
        os.mknod(root / "device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return root


FINAL = "step_0000020.safetensors"


def _reindex(run_dir: Path, **entry):
    """Record the final checkpoint's current hash (a damage that rewrites the index to match)."""
    index = json.loads((run_dir / "checkpoints" / "index.json").read_text())
    data = (run_dir / "checkpoints" / FINAL).read_bytes()
    index["20"] = {"file": FINAL, "sha256": hashlib.sha256(data).hexdigest(), **entry}
    (run_dir / "checkpoints" / "index.json").write_text(json.dumps(index))


def _damaged_caches(root: Path, cached: Path):
    """Copies of an evaluated run (its answer cached for --delays 4,30) with the files it rests on damaged."""
    evaluate_run(cached, [4, 30])

    def copy(name):
        shutil.copytree(cached, root / name / cached.name)
        return root / name / cached.name / "checkpoints"

    final = copy("cache-truncated") / FINAL
    final.write_bytes(final.read_bytes()[:64])
    final = copy("cache-garbled") / FINAL
    data = bytearray(final.read_bytes())
    data[len(data) // 2] ^= 0xFF
    final.write_bytes(bytes(data))
    (copy("cache-index") / "index.json").write_text('{"20": ')
    (copy("cache-index-list") / "index.json").write_text("[]")
    (copy("cache-index-entry") / "index.json").write_text('{"10": "x", "20": "y"}')
    tensors = load((cached / "checkpoints" / FINAL).read_bytes())
    tensors["model/weight_hh"] = torch.full_like(tensors["model/weight_hh"], float("nan"))
    (copy("cache-nan") / FINAL).write_bytes(save(tensors))
    _reindex(root / "cache-nan" / cached.name)
    (copy("cache-header") / FINAL).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbled")
    _reindex(root / "cache-header" / cached.name)
    outside = copy("cache-traversal").parent.parent / "outside"
    outside.mkdir()
    shutil.copy(cached / "checkpoints" / FINAL, outside / "x.safetensors")
    _reindex(root / "cache-traversal" / cached.name, file="../../outside/x.safetensors")
    copy("cache-absolute")
    _reindex(root / "cache-absolute" / cached.name, file=str(outside / "x.safetensors"))
    final = copy("cache-symlink") / FINAL
    final.unlink()
    final.symlink_to(outside / "x.safetensors")


def _hostile_runs(root: Path, copy, complete: Path):
    """Copies of a finished run with links, special files and tampered records inside (issue: nothing read,
    written or served that is not the run's own)."""
    outside = root / "outside-ck"
    shutil.copytree(complete / "checkpoints", outside)
    (outside / ".writer.tmp").write_text("a file outside the run, which no sweep may remove")
    for name in ("linked-ck", "linked-ck-pack"):
        run = copy(name)
        shutil.rmtree(run / "checkpoints")
        (run / "checkpoints").symlink_to(outside)
    for name, file in (("file-absolute", str(root / "x.safetensors")), ("file-parent", "../../x.safetensors")):
        run = copy(name)
        analyse_run(run)
        summary = store.read_json(run / "summary.json")
        summary["slowpoints"]["file"] = file
        (run / "summary.json").write_text(json.dumps(summary))
    shutil.copy(complete / "slowpoints.safetensors", root / "x.safetensors")
    tensors = load((complete / "checkpoints" / FINAL).read_bytes())
    del tensors["model/weight_hh"]
    (copy("missing-tensor") / "checkpoints" / FINAL).write_bytes(save(tensors))
    _reindex(root / "missing-tensor" / complete.name)
    extra = load((complete / "checkpoints" / FINAL).read_bytes())
    extra["model/stowaway"] = torch.zeros(3)
    (copy("extra-tensor") / "checkpoints" / FINAL).write_bytes(save(extra))
    _reindex(root / "extra-tensor" / complete.name)
    formed = copy("formed")
    trace_run(formed, max_iter=5)
    earlier = formed / "checkpoints" / "step_0000010.safetensors"
    earlier.write_bytes(earlier.read_bytes()[:64])
    for name in ("lock-fifo", "lock-link"):
        (copy(name) / ".lock").unlink()
    os.mkfifo(root / "lock-fifo" / complete.name / ".lock")
    (root / "lock-link" / complete.name / ".lock").symlink_to(root / "lock-target")


RUN = "{runs}/" + store.run_name(SMOKE)
UNFINISHED = "{runs}/" + store.run_name(make_config("smoke", steps=40, checkpoint_every=10, log_every=10))
BAD_SET = ["lr=inf", "lr=nan", "lr=-1", "lr=abc", "min_delay=0", "min_delay=20", "n_frames=1", "seeds=0",
           "steps=0", "batch_size=0", "hidden_size=-1", "checkpoint_every=7", "log_every=0", "eval_trials=0",
           "first_seed=-1", "lr_drop_at=2", "lr_drop_factor=0.5", "report_weight=0", "fast=maybe",
           "dataset=foo", "arch=foo", "protocol=foo", "device=tpu", "preset=foo", "nosuchfield=1", "noequals",
           "steps=1e12", "seeds=2.5"]
CONFLICTS = [("--steps", "20", "steps=30"), ("--seeds", "2", "seeds=3"), ("--arch", "gru", "arch=lstm"),
             ("--dataset", "synthetic", "dataset=mnist-5k"), ("--protocol", "none", "protocol=decu"),
             ("--device", "cpu", "device=auto"), ("--preset", "smoke", "preset=cpu")]

CASES = [
    *[(["train", "--seeds", v], repr(v)) for v in ("0", "-1", "abc", "1.5")],
    *[(["train", "--steps", v], repr(v)) for v in ("0", "-5", "1e12", "abc")],
    *[(["train", "--set", v], v.split("=")[0]) for v in BAD_SET],
    *[(["train", flag, value, "--set", s], s.split("=")[0]) for flag, value, s in CONFLICTS],
    (["train", "--set", "hidden_size=100000"], "memory"),
    (["train", "--set", "batch_size=10000000"], "memory"),
    (["train", "--steps", "1000000000"], "checkpoints would take"),
    (["train", "--seeds", "100000000"], "seeds"),
    (["train", "--steps", "1000000000000"], "steps"),
    (["train", "--set", "hidden_size=10000000"], "hidden_size"),
    (["train", "--out", "{root}/file.txt"], "file.txt"),
    (["train", "--dataset", "bogus"], "bogus"),
    (["train", "--preset", "bogus"], "bogus"),
    (["train", "--out", "{root}/truncated", "--steps", "20", "--set", "checkpoint_every=10"], "step_0000020"),
    (["train", "--out", "{root}/badsummary", "--steps", "20", "--set", "checkpoint_every=10"], "summary.json"),
    (["train", "--dataset", "mnist-5k", "--out", "{root}/new"], "mnist_5k.csv.gz"),
    (["train", "--dataset", "cifar10", "--out", "{root}/new"], "cifar-10-binary.tar.gz"),
    (["train", "--dataset", "mnist", "--out", "{root}/new"], "ubyte"),
    *[(["config", "--set", v], v.split("=")[0]) for v in ("lr=inf", "min_delay=0", "seeds=0", "bogus=1")],
    (["config", "--preset", "smoke", "--set", "preset=cpu"], "preset"),
    (["config", "--preset", "bogus"], "bogus"),
    *[(["evaluate", RUN, "--trials", v], repr(v)) for v in ("-5", "0", "1e12", "abc")],
    (["evaluate", RUN, "--trials", "100000"], "100000"),
    (["evaluate", RUN, "--seed", "-1"], "'-1'"),
    *[(["evaluate", RUN, "--delays", v], repr(v)) for v in ("0", "-3", "abc", "", "99999999")],
    (["evaluate", UNFINISHED], "not finished"),
    (["evaluate", "{root}/plain"], "plain"),
    (["evaluate", "{root}/missing"], "missing"),
    (["evaluate", RUN, "--device", "tpu"], "tpu"),
    (["evaluate", RUN.replace("{runs}", "{root}/badtype")], "config.json"),
    (["evaluate", RUN.replace("{runs}", "{root}/badsummary")], "summary.json"),
    (["evaluate", RUN.replace("{runs}", "{root}/truncated")], "step_0000020"),
    *[(["slowpoints", RUN, "--max-iter", v], repr(v)) for v in ("-1", "0", "abc")],
    *[(["slowpoints", RUN, "--tol", v], repr(v)) for v in ("-1", "nan", "inf")],
    (["slowpoints", RUN, "--step", "0"], "'0'"),
    (["slowpoints", RUN, "--step", "7"], "7"),
    (["slowpoints", UNFINISHED], "not finished"),
    (["slowpoints", "{root}/plain"], "plain"),
    (["slowpoints", "{root}/missing"], "missing"),
    (["slowpoints", RUN, "--method", "bogus"], "bogus"),
    *[(["formation", RUN, "--max-iter", v], repr(v)) for v in ("0", "-1", "abc")],
    (["formation", UNFINISHED], "not finished"),
    (["formation", "{root}/plain"], "plain"),
    (["formation", RUN.replace("{runs}", "{root}/garbled"), "--max-iter", "5"], "slowpoints-lm-reference-reference.safetensors"),
    (["correlate", "{root}/plain"], "plain"),
    (["correlate", RUN], "no extrapolation"),
    (["correlate", RUN.replace("{runs}", "{root}/mixed")], "mixes checkpoints"),
    *[(["correlate", RUN, "--min-delay", v], repr(v)) for v in ("0", "-1")],
    (["correlate", RUN, "--out", "{root}/plain"], "plain"),
    (["correlate", UNFINISHED], "not finished"),
    *[(["regularize", RUN, "--lam", v], repr(v)) for v in ("-1", "nan", "inf")],
    *[(["regularize", RUN, "--steps", v], repr(v)) for v in ("0", "-5", "abc")],
    (["regularize", RUN, "--relocate", "-1"], "'-1'"),
    (["regularize", RUN, "--mode", "bogus"], "bogus"),
    (["regularize", RUN, "--min-delay", "0"], "'0'"),
    (["regularize", RUN, "--delays", "0"], "'0'"),
    (["regularize", UNFINISHED], "not finished"),
    (["regularize", "{root}/plain"], "plain"),
    *[([command, "--seeds", "0"], "'0'") for command in ("grid", "campaign")],
    *[([command, "--set", "arch=lstm"], "arch") for command in ("grid", "campaign")],
    *[([command, "--set", "protocol=decu"], "protocol") for command in ("grid", "campaign")],
    *[([command, "--set", "lr=inf"], "lr") for command in ("grid", "campaign")],
    *[([command, "--archs", "bogus"], "bogus") for command in ("grid", "campaign")],
    *[([command, "--protocols", "bogus"], "bogus") for command in ("grid", "campaign")],
    *[([command, "--out", "{root}/file.txt"], "file.txt") for command in ("grid", "campaign")],
    *[([command, "--seeds", "2", "--set", "seeds=3"], "seeds") for command in ("grid", "campaign")],
    (["grid", "--delays", "0"], "'0'"),
    (["grid", "--preset", "bogus"], "bogus"),
    (["book", "run", "--chapters", "bogus"], "bogus"),
    (["book", "run", "--preset", "bogus"], "bogus"),
    (["book", "run", "--set", "noequals"], "noequals"),
    (["bogus"], "bogus"),
    # config values: finite, in range, no raw overflow
    *[(["config", "--set", f"finetune_fraction={v}"], "finetune_fraction")
      for v in ("nan", "inf", "-inf", "-0.1", "0", "1e308", "1.5")],
    *[(["config", "--set", f"{field}={10**30}"], field)
      for field in ("seeds", "hidden_size", "batch_size", "steps", "checkpoint_every", "log_every", "eval_trials",
                    "search_iterations", "first_seed")],
    *[(["config", "--set", v], v.split("=")[0]) for v in ("lr=1e308", "lr_drop_factor=1e308", "report_weight=1e308")],
    (["config", "--set", "seeds=10000", "--set", "hidden_size=100000"], "memory"),
    *[(["train", "--set", v], v.split("=")[0]) for v in ("finetune_fraction=nan", "first_seed=" + "9" * 30)],
    # a cached answer is served only after its checkpoint verifies
    *[(["evaluate", RUN.replace("{runs}", "{root}/cache-" + damage), "--delays", "4,30"], named)
      for damage, named in (("truncated", FINAL), ("garbled", "SHA-256"), ("index", "index.json"),
                            ("index-list", "index.json"), ("index-entry", "index.json"), ("nan", "non-finite"),
                            ("header", FINAL), ("traversal", "index.json"), ("absolute", "index.json"),
                            ("symlink", "is a symbolic link"))],
    (["slowpoints", RUN.replace("{runs}", "{root}/cache-nan")], "non-finite"),
    (["correlate", RUN.replace("{runs}", "{root}/cache-garbled")], "SHA-256"),
    (["regularize", RUN.replace("{runs}", "{root}/cache-traversal")], "index.json"),
    (["evaluate", RUN.replace("{runs}", "{root}/reshaped")], "do not fit"),
    # another run's files are never used
    (["train", "--out", "{root}/foreign", "--steps", "20", "--set", "checkpoint_every=10"], "config.json"),
    (["evaluate", RUN.replace("{runs}", "{root}/foreign")], "config.json"),
    (["evaluate", "{root}/renamed/synthetic-gru-none-0123456789ab"], "config.json"),
    (["slowpoints", "{root}/renamed/synthetic-gru-none-0123456789ab"], "config.json"),
    *[(["evaluate", RUN.replace("{runs}", "{root}/summary-" + name)], "summary.json")
      for name in ("null", "list", "number", "text")],
    *[(["train", "--out", "{root}/summary-" + name, "--steps", "20", "--set", "checkpoint_every=10"], "summary.json")
      for name in ("null", "list", "text")],
    # writes replace only a regular file
    *[(["correlate", RUN.replace("{runs}", "{root}/complete"), "--min-delay", "30", "--out", "{root}/" + name], kind)
      for name, kind in (("fifo", "a FIFO"), ("link.json", "a symbolic link"), ("device", "a device"))],
    # paths the system cannot look up
    (["train", "--out", "/".join(["x" * 250] * 20)], "File name too long"),
    (["correlate", RUN, "--out", "/".join(["x" * 250] * 20)], "File name too long"),
    # schedulers: the message says where the address came from
    (["grid", "--scheduler", "bogus://nowhere"], "bogus"),
    (["grid"], "$MEMRNN_SCHEDULER", {"MEMRNN_SCHEDULER": "bogus://nowhere"}),
    (["campaign"], "$MEMRNN_SCHEDULER", {"MEMRNN_SCHEDULER": "bogus://nowhere"}),
    (["evaluate", RUN], "MEMRNN_LOCK_TIMEOUT", {"MEMRNN_LOCK_TIMEOUT": "soon"}),
    # a finished run is reused, and a fine-tune started, only from a checkpoint that verifies
    *[(["train", "--out", "{root}/cache-" + damage, "--steps", "20", "--set", "checkpoint_every=10"], named)
      for damage, named in (("nan", "non-finite"), ("traversal", "index.json"), ("symlink", "is a symbolic link"))],
    (["formation", RUN.replace("{runs}", "{root}/cache-garbled")], "SHA-256"),
    (["regularize", RUN.replace("{runs}", "{root}/foreign")], "config.json"),
    # an archive of runs is written only from runs that verify, and fetched only with a SHA-256
    (["runs"], "ACTION"),
    (["runs", "pack", "{root}/out.zip"], "not a tar.gz name"),
    (["runs", "pack", "{root}/plain"], "not a tar.gz name"),
    (["runs", "pack", "{root}/out.tar.gz", "--runs", "{root}/file.txt"], "is a file"),
    (["runs", "pack", "{root}/out.tar.gz", "--runs", "{root}/absent"], "absent does not exist"),
    (["runs", "pack", "{root}/out.tar.gz", "--runs", "{root}/plain"], "holds no finished run"),
    (["runs", "pack", "{root}/out.tar.gz", "--runs", "{runs}", "nope"], "'nope' is not a run directory"),
    (["runs", "pack", "{root}/out.tar.gz", "--runs", "{runs}", "--checkpoints", "some"], "invalid choice: 'some'"),
    (["runs", "pack", "{root}/out.tar.gz", "--runs", "{runs}", "--bogus"], "unrecognized arguments: --bogus"),
    *[(["runs", "pack", "{root}/out.tar.gz", "--runs", "{root}/" + damage, store.run_name(SMOKE)], named)
      for damage, named in (("cache-garbled", "SHA-256"), ("cache-symlink", "is a symbolic link"),
                            ("foreign", "config.json"), ("badsummary", "summary.json"))],
    (["runs", "fetch", "http://127.0.0.1:9/runs.tar.gz"], "--sha256"),
    (["runs", "fetch", "http://127.0.0.1:9/runs.tar.gz", "--sha256", "xyz"], "'xyz' is not a SHA-256"),
    (["runs", "fetch", "http://127.0.0.1:9/runs.tar.gz", "--sha256", "0" * 64, "--runs", "{root}/new", "--quiet"],
     "could not download http://127.0.0.1:9/runs.tar.gz"),
    *[(["runs", "fetch", "http://127.0.0.1:9/runs.tar.gz", "--sha256", "0" * 64, option, v], repr(v))
      for option in ("--max-bytes", "--max-unpacked") for v in ("0", "-1", "lots", "1X")],
    # nothing read, written or served that is not the run's own: a linked folder inside a run is never followed
    (["evaluate", RUN.replace("{runs}", "{root}/linked-ck")], "checkpoints is a symbolic link"),
    (["evaluate", RUN.replace("{runs}", "{root}/linked-ck"), "--delays", "4,30"], "checkpoints is a symbolic link"),
    (["train", "--out", "{root}/linked-ck", "--steps", "20", "--set", "checkpoint_every=10"],
     "checkpoints is a symbolic link"),
    (["slowpoints", RUN.replace("{runs}", "{root}/linked-ck")], "checkpoints is a symbolic link"),
    (["runs", "pack", "{root}/out.tar.gz", "--runs", "{root}/linked-ck-pack"], "checkpoints is a symbolic link"),
    (["correlate", RUN.replace("{runs}", "{root}/linked-ck")], "checkpoints is a symbolic link"),
    # ... nor a summary's file field that leads out of the run
    *[([command, RUN.replace("{runs}", "{root}/file-" + where)], named)
      for command in ("regularize", "slowpoints", "evaluate", "formation", "correlate")
      for where, named in (("absolute", "{root}/x.safetensors"), ("parent", "'../../x.safetensors'"))],
    *[(["runs", "pack", "{root}/out.tar.gz", "--runs", "{root}/file-" + where], "not a file of the run")
      for where in ("absolute", "parent")],
    # a checkpoint verifies only with exactly its configuration's tensors, cached answer or not
    *[(["evaluate", RUN.replace("{runs}", "{root}/" + damage)] + delays, named)
      for damage, named in (("missing-tensor", "lacks model/weight_hh"), ("extra-tensor", "model/stowaway"))
      for delays in ([], ["--delays", "4,30"])],
    (["slowpoints", RUN.replace("{runs}", "{root}/missing-tensor")], "lacks model/weight_hh"),
    (["runs", "pack", "{root}/out.tar.gz", "--runs", "{root}/missing-tensor"], "lacks model/weight_hh"),
    # a cached formation trace is served only while every checkpoint it read has its hash
    (["formation", RUN.replace("{runs}", "{root}/formed"), "--max-iter", "5"], "step_0000010.safetensors"),
    # the lock: a FIFO refused at once, a link never followed nor created through
    *[(argv, named) for where, named in (("lock-fifo", "is a FIFO"), ("lock-link", "is a symbolic link"))
      for argv in (["evaluate", RUN.replace("{runs}", "{root}/" + where)],
                   ["train", "--out", "{root}/" + where, "--steps", "20", "--set", "checkpoint_every=10"],
                   ["slowpoints", RUN.replace("{runs}", "{root}/" + where)],
                   ["runs", "pack", "{root}/out.tar.gz", "--runs", "{root}/" + where])],
    # unbounded work refused as train refuses it; a device that is not there refused, cached or not
    (["slowpoints", RUN, "--max-iter", str(10**12)], f"'{10**12}' is not allowed"),
    (["formation", RUN, "--max-iter", str(10**12)], f"'{10**12}' is not allowed"),
    (["regularize", RUN, "--steps", str(10**12)], f"'{10**12}' is not allowed"),
    (["regularize", RUN, "--steps", str(10**9)], "checkpoints would take"),
    *[([command, RUN.replace("{runs}", "{root}/complete"), "--device", "cuda"] + extra, "no CUDA device")
      for command, extra in (("evaluate", ["--delays", "4,30"]), ("slowpoints", []), ("formation", []))],
    (["book", "run", "--preset", "smoke", "--set", "preset=cpu"], "preset is given twice"),
    (["book", "run", "--root", str(ROOT), "--set", "preset=bogus"], "'bogus'"),
    # errors that name the value
    (["evaluate", RUN, "--seed", str(2**70)], f"'{2**70}' is not allowed"),
    *[(["book", "run", "--root", str(ROOT), "--set", f"seeds={v}"], f"seeds={v!r}") for v in ("nan", "inf", "2.5", "many")],
    *[(["book", "run", "--root", str(ROOT), "--set", f"lam={v}"], f"lam={v!r}") for v in ("nan", "-inf", "much")],
]


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_enough_cases():
    assert len(CASES) >= 200


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c[0])[:120] for c in CASES])
def test_bad_input_is_a_clear_error(root, case, capsys, monkeypatch):
    argv, named, env = (*case, {})[:3]
    if "{root}/device" in argv and not (root / "device").exists():
        pytest.skip("making a device file needs root")
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("refusing a missing CUDA needs a machine without one")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MEMRNN_DATA", str(root / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    monkeypatch.chdir(root)
    argv = [a.format(root=root, runs=root / "runs") for a in argv]
    if argv[0] in ("train", "grid", "campaign") and "--out" not in argv:
        argv += ["--out", str(root / "new")]
    before = _digest(root)
    try:
        code = main(argv + ["--quiet"] if argv[0] in ("train", "grid", "campaign", "regularize") else argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("memrnn: error: ") and err.count("\n") == 1, err
    assert named.format(root=root) in err, err
    assert _digest(root) == before
    assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode) and (root / "link.json").is_symlink()
    assert not os.path.exists(root / "lock-target") and (root / "outside-ck" / ".writer.tmp").exists()


def test_a_run_being_written_is_waited_for_visibly_then_refused(root, capsys, monkeypatch):
    """evaluate on a run whose lock another process holds says so at once, and gives up at the timeout."""
    run = Path(RUN.format(runs=root / "runs"))
    monkeypatch.setenv("MEMRNN_LOCK_TIMEOUT", "0.5")
    before = _digest(root)
    with open(run / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a training in another process holds it
        code = main(["evaluate", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    waiting, error = err.splitlines()
    assert waiting.startswith("memrnn: waiting for another process") and str(run) in waiting
    assert error.startswith("memrnn: error: evaluate: ") and "still being written" in error
    assert _digest(root) == before
