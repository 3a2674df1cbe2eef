"""Training progress reported through a folder, for a runner that cannot see the training's own bar."""
import threading
import time

from memrnn import store
from memrnn.presets import make_config
from memrnn.progress import PROGRESS_ENV, Reporter, TrainingBar, read
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
    assert report == {"start": 20, "step": 60, "end": 60}
    assert read(reports) == (40, 40, 0)
    store.write_json(reports / "other.json", {"start": 0, "step": 5, "end": 30})
    assert read(reports) == (45, 70, 1)


def test_the_bar_shows_the_training_in_flight_and_clears_its_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path))
    store.write_json(tmp_path / "left-over.json", {"start": 0, "step": 1, "end": 9})  # from an earlier chapter

    def loop():
        report = Reporter("run", 0, 30)
        for step in range(1, 31):
            report(step)
            time.sleep(0.1)

    with TrainingBar(tmp_path, position=0):
        assert not (tmp_path / "left-over.json").exists()
        worker = threading.Thread(target=loop)
        worker.start()
        worker.join()
        time.sleep(1.5)  # the bar's last read
    shown = capsys.readouterr().err
    assert "training:" in shown and "1 run(s) in flight" in shown and "30/30" in shown
    assert list(tmp_path.iterdir()) == []
