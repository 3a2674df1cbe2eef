"""Nothing read, written or served that is not a run's own: cached results bound to the hash of the
checkpoint they came from, a killed writer's leftovers removed, the book's files never written through a
link, and the chapters' parameters checked. (Refusals of hostile runs and archives: the bad-input table
in test_cli_errors.py and the archive tests.)"""
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

from memrnn import book, display, flipflop, store
from memrnn.cli import main
from memrnn.evaluate import evaluate_run
from memrnn.fixedpoints import sample_starts
from memrnn.presets import make_config
from memrnn.train import train

ROOT = Path(__file__).resolve().parents[1]
FINAL = "step_0000020.safetensors"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished smoke runs of the same shapes (other seeds): (run, other)."""
    folder = tmp_path_factory.mktemp("confinement")
    run = train(make_config("smoke", steps=20, checkpoint_every=10, log_every=10), folder, progress=False)
    other = train(make_config("smoke", steps=20, checkpoint_every=10, log_every=10, first_seed=7), folder,
                  progress=False)
    return run, other


def _swap_final(run: Path, source: Path) -> str:
    """Put ``source``'s final checkpoint in ``run`` with its hash in the index (a valid checkpoint, not the run's)."""
    shutil.copy(source / "checkpoints" / FINAL, run / "checkpoints" / FINAL)
    sha = hashlib.sha256((run / "checkpoints" / FINAL).read_bytes()).hexdigest()
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    index["20"]["sha256"] = sha
    (run / "checkpoints" / "index.json").write_text(json.dumps(index))
    return sha


def test_a_cached_evaluation_is_served_only_for_the_checkpoint_it_came_from(runs, tmp_path):
    run, other = runs
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    first = evaluate_run(copy, [4, 30])
    assert first["checkpoint_sha256"] == store.checkpoint_sha256(copy, 20)
    marked = {**first, "overall": [[0.5, 0.5]] * 2}  # what the cache holds, told apart from a computed answer
    store.update_summary(copy, extrapolation=marked)
    assert evaluate_run(copy, [4, 30]) == marked  # served: the checkpoint is the one it came from
    sha = _swap_final(copy, other)
    swapped = evaluate_run(copy, [4, 30])
    assert swapped["checkpoint_sha256"] == sha != first["checkpoint_sha256"]
    assert swapped["overall"] == evaluate_run(other, [4, 30])["overall"] != marked["overall"]


@pytest.mark.parametrize("recorded", [None, "0" * 64])
def test_fabricated_or_old_results_without_the_checkpoint_hash_are_recomputed(runs, tmp_path, recorded):
    run, _ = runs
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    honest = evaluate_run(copy, [4, 30])
    fabricated = {**honest, "overall": [[1.0, 1.0]] * 2}
    fabricated.pop("checkpoint_sha256")  # a result from before hashes were recorded, or one naming another checkpoint
    if recorded:
        fabricated["checkpoint_sha256"] = recorded
    store.update_summary(copy, extrapolation=fabricated)
    assert evaluate_run(copy, [4, 30]) == honest


def test_a_killed_writers_temporary_folders_in_a_run_are_removed_by_the_next_command(runs, tmp_path, capsys):
    run, _ = runs
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    for folder in (copy / ".x.tmp", copy / "checkpoints" / ".y.tmp"):
        folder.mkdir()
        (folder / "part").write_text("left by a kill")
    assert main(["evaluate", str(copy), "--delays", "4,30"]) == 0
    assert "delay     30" in capsys.readouterr().out
    assert not (copy / ".x.tmp").exists() and not (copy / "checkpoints" / ".y.tmp").exists()


@pytest.mark.parametrize("name", [".01_task.source.ipynb", ".01_task.partial.ipynb", "01_task.ipynb"])
def test_book_run_never_writes_through_a_link(tmp_path, name):
    (tmp_path / "book" / "src").mkdir(parents=True)
    shutil.copy(ROOT / "book" / "src" / "01_task.py", tmp_path / "book" / "src")
    outside = tmp_path / "outside.ipynb"
    outside.write_text("mine")
    (tmp_path / "book" / name).symlink_to(outside)
    with pytest.raises(ValueError, match=f"{name} is a symbolic link"):
        book.run(tmp_path, "smoke", ["01_task"], {"scheduler": "sync"}, progress=False)
    assert outside.read_text() == "mine" and (tmp_path / "book" / name).is_symlink()


def test_the_landing_page_table_is_never_written_through_a_link(tmp_path):
    outside = tmp_path / "outside.md"
    outside.write_text("mine")
    (tmp_path / "_results.md").symlink_to(outside)
    with pytest.raises(ValueError, match="_results.md is a symbolic link"):
        display.write_summary(tmp_path, [])
    assert outside.read_text() == "mine"


@pytest.mark.parametrize("parameters, named", [({"runs": 5}, "runs=5"), ({"archs": 7}, "archs=7"),
                                               ({"seeds": math.nan}, "seeds=nan"), ({"seeds": "2.5"}, "seeds='2.5'"),
                                               ({"lam": math.inf}, "lam=inf"), ({"preset": "cpu"}, "preset")])
def test_book_run_refuses_a_parameter_of_the_wrong_kind_before_running(parameters, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        book.run(ROOT, "smoke", ["02_extrapolation", "06_regularization"], parameters, progress=False)


def test_book_run_parameters_take_their_cells_types():
    assert book.typed_parameter("seeds", "3", int) == 3
    assert book.typed_parameter("lam", "1e-3", float) == 1e-3 and book.typed_parameter("lam", 2, float) == 2.0
    assert book.typed_parameter("lams", "0.1", str) == "0.1" and book.typed_parameter("runs", "5", str) == "5"


def test_the_own_network_chapter_refuses_bad_noise_and_seeds():
    with pytest.raises(ValueError, match="seed=-1 is not allowed"):
        flipflop.make_config("smoke", seed=-1)
    config = flipflop.make_config("smoke")
    net = flipflop.FlipFlopNet(config)
    points = torch.zeros(2, config.hidden_size)
    for noise in (-0.1, 1e308, math.nan, math.inf):
        with pytest.raises(ValueError, match=re.escape(f"noise={noise!r} is not allowed")):
            flipflop.holding_times(net, points, noise, n_trials=2, max_steps=5)
        with pytest.raises(ValueError, match="noise"):
            flipflop.trials(config, 2, torch.Generator().manual_seed(0), noise)
    with pytest.raises(ValueError, match="seed=-1 is not allowed"):
        flipflop.holding_times(net, points, 0.1, n_trials=2, max_steps=5, seed=-1)
    with pytest.raises(ValueError, match="noise=nan is not allowed"):
        sample_starts(torch.zeros(4, 3), 2, math.nan)
    assert flipflop.holding_times(net, points, 0.0, n_trials=2, max_steps=5).shape == (2, 2)  # the bounds admit 0
