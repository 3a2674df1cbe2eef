import contextlib
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from memrnn.cli import main
from memrnn.data import DEBIAN_FASHION_MNIST


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "memrnn", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("train", "evaluate", "grid", "config"):
        assert command in out


def _datasets():
    names = ["synthetic", "mnist-5k"]
    if DEBIAN_FASHION_MNIST.exists():
        names.append("fashion-mnist")
    return names


@pytest.mark.parametrize("dataset", _datasets())
def test_train_then_evaluate_end_to_end(tmp_path, capsys, dataset):
    assert main(["train", "--preset", "smoke", "--dataset", dataset, "--arch", "lstm", "--protocol", "vocu",
                 "--seeds", "2", "--steps", "20", "--out", str(tmp_path), "--quiet"]) == 0
    run_dir = next(tmp_path.iterdir())
    assert run_dir.name.startswith(f"{dataset}-lstm-vocu-")
    assert main(["evaluate", str(run_dir), "--delays", "4,10,60", "--trials", "50"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["dataset"] == dataset
    assert len(summary["train"]["trained_delay_accuracy"]) == 2
    extrapolation = summary["extrapolation"]
    assert extrapolation["delays"] == [4, 10, 60]
    assert len(extrapolation["accuracy"]) == 2 and len(extrapolation["accuracy"][0]) == 3
    assert len(extrapolation["accuracy"][0][0]) == 10
    assert "delay     60" in capsys.readouterr().out


def test_bad_input_is_reported(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--preset", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path), "--delays", "4,x"])
    assert main(["train", "--set", "lr=-1", "--out", str(tmp_path)]) == 2
    assert "lr must be a finite number in (0, 10], got -1" in capsys.readouterr().err


def test_slow_point_analysis_end_to_end(tmp_path, capsys):
    out = tmp_path / "runs"
    for protocol in ("decu", "none"):
        assert main(["train", "--preset", "smoke", "--protocol", protocol, "--steps", "40", "--out", str(out),
                     "--quiet"]) == 0
    runs = sorted(out.iterdir())
    for run in runs:
        assert main(["evaluate", str(run), "--delays", "4,100,150", "--trials", "60"]) == 0
        assert main(["slowpoints", str(run)]) == 0
        assert main(["formation", str(run), "--max-iter", "10"]) == 0
    summary = json.loads((runs[0] / "summary.json").read_text())["slowpoints"]
    assert len(summary["speed"]) == 2 and len(summary["speed"][0]) == 10
    assert all(isinstance(v, bool) for v in summary["stable"][0])
    formation = json.loads((runs[0] / "formation.json").read_text())
    assert formation["steps"] == [20, 40] and len(formation["speed"][0][0]) == 2
    # the last checkpoint's traced speeds are the final analysis it started from: Levenberg-Marquardt's
    started_from = json.loads((runs[0] / "summary.json").read_text())["slowpoints-lm-reference-reference"]
    assert formation["analysis"][0] == "lm" and formation["start_in_region"] == started_from["in_region"]
    final = [row[-1] for row in formation["speed"][0]]
    assert final == pytest.approx(started_from["speed"][0], rel=1e-3, abs=1e-9)
    table_file = tmp_path / "corr.json"
    assert main(["correlate", *map(str, runs), "--min-delay", "100", "--out", str(table_file)]) == 0
    table = json.loads(table_file.read_text())
    assert len(table["rows"]) == 2 * 2 * 10 and table["table"][0]["condition"] == "pooled"
    assert "spearman" in capsys.readouterr().out
    assert main(["correlate", str(runs[0]), "--min-delay", "1000"]) == 2
    # the README's Python example runs as written on a trained run
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("### Slow points from Python")[1].split("```python")[1].split("```")[0]
    namespace = {}
    exec(example.replace("runs/mnist-5k-gru-decu-<hash>", str(runs[0])), namespace)
    assert namespace["found"].points.shape == (2, 10, 32) and len(namespace["walked"]) == 4


def test_regularize_compares_modes(tmp_path, capsys):
    assert main(["train", "--preset", "smoke", "--steps", "20", "--out", str(tmp_path), "--quiet"]) == 0
    run = next(tmp_path.iterdir())
    assert main(["regularize", str(run), "--steps", "10", "--delays", "4,120", "--quiet"]) == 0
    out = capsys.readouterr().out
    for mode in ("control", "slowpoints", "centermass", "tar"):
        assert mode in out
    report = json.loads((run / "regularization.json").read_text())
    assert [r["mode"] for r in report["modes"]] == ["control", "slowpoints", "centermass", "tar"]
    assert len(list(tmp_path.iterdir())) == 5


def test_campaign_runs_every_stage(tmp_path, capsys):
    assert main(["campaign", "--preset", "smoke", "--archs", "gru", "--protocols", "none", "--set", "steps=20",
                 "--out", str(tmp_path), "--quiet"]) == 0
    result = json.loads((tmp_path / "campaign-smoke-synthetic.json").read_text())
    (run,) = result["regularization"]
    assert (tmp_path / run / "formation.json").exists() and (tmp_path / run / "slowpoints.safetensors").exists()
    assert [r["mode"] for r in result["regularization"][run]] == ["control", "slowpoints", "centermass", "tar"]
    assert "change in long-delay accuracy" in capsys.readouterr().out


def test_config_lists_every_value_each_choice_field_allows_and_each_is_accepted(capsys):
    """`memrnn config` names, per field with a fixed set of values, exactly the values the configuration
    accepts, the reference's first for a model-form field; the values listed are the only ones allowed."""
    from memrnn.presets import CHOICES, MODEL_FORM, Config

    assert main(["config", "--preset", "cpu", "--set", "cell=torch"]) == 0
    lines = {line.split()[0]: line.split(maxsplit=2)[1:] for line in capsys.readouterr().out.splitlines()}
    assert list(lines) == [f.name for f in dataclasses.fields(Config)]
    assert lines["cell"][0] == "torch" and lines["steps"] == ["12000"]  # as the preset resolves them
    listed = {}
    for field, (value, *rest) in lines.items():
        if rest:
            assert rest[0].startswith("one of: ")
            listed[field] = [v.split(" (")[0].split(";")[0] for v in rest[0].removeprefix("one of: ").split(", ")]
    assert listed.keys() == set(CHOICES) | {"fast"}
    for field in MODEL_FORM:
        assert f"{CHOICES[field][0]} (the reference's)" in lines[field][1]
    for field, values in listed.items():
        for value in values:
            assert main(["config", "--set", f"{field}={value}"]) == 0, (field, value)
        with pytest.raises(SystemExit) if field == "fast" else contextlib.nullcontext():  # argparse parses a bool
            assert main(["config", "--set", f"{field}=not-listed"]) == 2, field
    capsys.readouterr()
    assert main(["config", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["preset"] == "smoke"
