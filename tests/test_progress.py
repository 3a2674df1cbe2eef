"""Progress of training and slow-point searches reported through a folder, for a runner that cannot see their own bars."""
import threading
import time

import pytest

from memrnn import store
from memrnn.presets import make_config
from memrnn.formation import trace_run
from memrnn.progress import PROGRESS_ENV, SEARCH, TRACE, TRAINING, ProgressBars, Reporter, read
from memrnn.slowpoints import analyse_run
from memrnn.train import train


def test_training_reports_its_steps_counted_from_where_it_began(tmp_path, monkeypatch):
    config = make_config("smoke", steps=60)
    reports = tmp_path / "reports"
    reports.mkdir()
    train(config, tmp_path / "runs", stop_after=20, progress=False)  # no folder named: nothing reported
    assert list(reports.iterdir()) == []
    monkeypatch.setenv(PROGRESS_ENV, str(reports))
    train(config, tmp_path / "runs", progress=False)  # resumed at its checkpoint of step 20
    report = store.read_json(reports / f"{store.run_name(config)}.json")
    assert report == {"kind": TRAINING, "start": 20, "step": 60, "end": 60}
    assert read(reports) == {TRAINING: (40, 40, 0)}
    store.write_json(reports / "other.json", {"kind": TRAINING, "start": 0, "step": 5, "end": 30})
    assert read(reports) == {TRAINING: (45, 70, 1)}


def test_the_reference_search_reports_its_iterations_the_trace_its_checkpoints_and_lm_nothing(tmp_path, monkeypatch):
    run = train(make_config("smoke", steps=20, search_iterations=40, checkpoint_every=5, log_every=5), tmp_path / "runs", progress=False)
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "reports"))
    (tmp_path / "reports").mkdir()
    analyse_run(run, search="lm")
    assert read(tmp_path / "reports") == {}
    analyse_run(run)  # the run's own search: the reference's, 40 iterations
    assert read(tmp_path / "reports") == {SEARCH: (40, 40, 0)}
    trace_run(run, max_iter=3)  # back through the checkpoints of steps 15, 10, 5 (and 0 when kept)
    traced = len(store.checkpoint_steps(run)) - 1
    assert traced >= 3 and read(tmp_path / "reports") == {SEARCH: (40, 40, 0), TRACE: (traced, traced, 0)}
    with pytest.raises(ValueError, match=r"unknown kind of work 'sleeping'; choose one of \('training', "):
        Reporter("run", 0, 1, kind="sleeping")


def test_the_bars_show_each_kind_of_work_in_flight_and_clear_their_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path))
    store.write_json(tmp_path / "left-over.json", {"kind": TRAINING, "start": 0, "step": 1, "end": 9})  # an earlier chapter's

    def loop(name, end, kind):
        report = Reporter(name, 0, end, kind)
        for step in range(1, end + 1):
            report(step)
            time.sleep(0.1)

    with ProgressBars(tmp_path, position=0):
        assert not (tmp_path / "left-over.json").exists()
        workers = [threading.Thread(target=loop, args=("run", 30, TRAINING)),
                   threading.Thread(target=loop, args=("run-slowpoints", 20, SEARCH))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        time.sleep(1.5)  # the bars' last read
    shown = capsys.readouterr().err
    assert "training:" in shown and "30/30" in shown and "slow-point search:" in shown and "20/20" in shown
    assert "1 in flight" in shown and "9/9" not in shown
    assert list(tmp_path.iterdir()) == []
