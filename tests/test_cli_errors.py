"""Bad input over every subcommand: exit 2, one line naming the bad thing, no traceback, no file changed."""
import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from memrnn import store
from memrnn.cli import main
from memrnn.presets import make_config
from memrnn.slowpoints import analyse_run
from memrnn.train import train

SMOKE = make_config("smoke", steps=20, checkpoint_every=10, log_every=10)


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
    (garbled / "slowpoints.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbled")
    data = root / "data"
    data.mkdir()
    (data / "mnist_5k.csv.gz").write_bytes(gzip.compress(b"1,2,3\nx,y\n")[:-6])
    (data / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b\x08 broken")
    (data / "mnist").mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data / "mnist" / f"{stem}.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip")
    return root


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
    (["train", "--set", "hidden_size=10000000"], "memory"),
    (["train", "--set", "batch_size=100000000"], "memory"),
    (["train", "--seeds", "100000000"], "memory"),
    (["train", "--steps", "1000000000000"], "checkpoints would take"),
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
    (["formation", RUN.replace("{runs}", "{root}/garbled"), "--max-iter", "5"], "slowpoints.safetensors"),
    (["correlate", "{root}/plain"], "plain"),
    (["correlate", RUN], "no extrapolation"),
    (["correlate", RUN.replace("{runs}", "{root}/mixed")], "mixes checkpoints"),
    *[(["correlate", RUN, "--min-delay", v], repr(v)) for v in ("0", "-1")],
    (["correlate", RUN, "--out", "{root}/plain"], "plain"),
    (["correlate", UNFINISHED], "summary.json"),
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
]


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_enough_cases():
    assert len(CASES) >= 100


@pytest.mark.parametrize("argv,named", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_a_clear_error(root, argv, named, capsys, monkeypatch):
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
    assert "error:" in err and named.format(root=root) in err, err
    assert _digest(root) == before
