"""The chapters' runtime notes: a page states only times the book runner measured (book/timings.json),
never a duration written by hand, and the README's times are those the runner recorded."""
import json
import re
from pathlib import Path

import pytest

from memrnn import book
from memrnn.book import CHAPTERS, TIMINGS_FILE, _minutes, record_timing, source_notebook
from memrnn.chapter import runtime_note

ROOT = Path(__file__).resolve().parents[1]
# a duration: a number with a unit, or a unit word at all ("seconds once cached" states one too)
DURATION = re.compile(r"\d[\d.,]*\s*(?:seconds?|minutes?|hours?|s|min|h)\b|\b(?:seconds?|minutes?|hours?)\b",
                      re.IGNORECASE)


def test_the_runtime_note_states_the_recorded_times(tmp_path, monkeypatch):
    monkeypatch.setattr(book, "machine", lambda: "2 CPU cores, test")
    path = tmp_path / TIMINGS_FILE
    record_timing(path, "cpu", "08_choices", 4973.3, "from_empty")
    record_timing(path, "cpu", "08_choices", 9.7, "cached")
    record_timing(path, "cpu", "03_slowpoints", 119.6, "cached")
    assert runtime_note("08_choices", "cpu", path).data.endswith(
        "from an empty runs folder, 82.9 min (2 CPU cores, test); with no network to train, 10 s (2 CPU cores, test).")
    # seconds under two minutes; a kind never measured says so
    assert runtime_note("03_slowpoints", "cpu", path).data.endswith(
        "from an empty runs folder, not measured yet; with no network to train, 120 s (2 CPU cores, test).")
    assert runtime_note("01_task", "cpu", path).data.endswith(
        "from an empty runs folder, not measured yet; with no network to train, not measured yet.")
    assert "`smoke`" in runtime_note("08_choices", "smoke", path).data
    assert "82.9" not in runtime_note("08_choices", "smoke", path).data  # another preset's times are not these


def test_without_a_timings_file_the_note_says_none_are_here(tmp_path):
    assert runtime_note("01_task", "cpu", tmp_path / TIMINGS_FILE).data == \
        "**Measured runtime at `cpu`:** none here (no `timings.json` beside this notebook)."


@pytest.mark.parametrize("chapter, preset, named", [("1_task", "cpu", "chapter '1_task'"),
                                                    ("01_task", "fast", "preset 'fast'")])
def test_a_bad_chapter_or_preset_is_refused_by_name(chapter, preset, named):
    with pytest.raises(ValueError, match=f"{named} is not allowed: choose one of"):
        runtime_note(chapter, preset)


def _runtime_paragraphs(name):
    cells = source_notebook(ROOT / "book" / "src" / f"{name}.py").cells
    return [p for c in cells if c.cell_type == "markdown"
            for p in c.source.split("\n\n") if p.lstrip().startswith("**Runtime")]


def runtime_by_hand(paragraphs):
    return [m.group() for p in paragraphs for m in DURATION.finditer(p)]


def test_the_check_finds_a_duration_written_by_hand():
    assert runtime_by_hand(["**Runtime:** computing it from nothing took 19\nminutes; seconds once cached."]) \
        == ["19\nminutes", "seconds"]
    assert runtime_by_hand(["**Runtime.** 4.5 s at `smoke`, 3 min at `cpu`"]) == ["4.5 s", "3 min"]
    assert runtime_by_hand(["**Runtime:** 5 switches × 5 GRUs, 4 parents × 4 modes (C1–C3)."]) == []


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_chapter_states_a_runtime_by_hand_and_each_shows_its_measured_one(name):
    paragraphs = _runtime_paragraphs(name)
    assert runtime_by_hand(paragraphs) == [], f"book/src/{name}.py states a runtime by hand"
    if paragraphs:  # the measured times, of this chapter at the preset it runs at, follow the parameters
        cells = source_notebook(ROOT / "book" / "src" / f"{name}.py").cells
        first = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        calls = [i for i, c in enumerate(cells) if "runtime_note(" in c.source]
        assert [cells[i].source.count(f'runtime_note("{name}", preset)') for i in calls] == [1]
        assert calls[0] > first and "hide-input" in cells[calls[0]].metadata["tags"]


def test_a_chapter_reads_the_times_beside_its_notebook(monkeypatch):
    monkeypatch.chdir(ROOT / "book")  # where the runner executes the chapters and writes the times
    seconds = json.loads(Path(TIMINGS_FILE).read_text())["cpu"]["from_empty"]["08_choices"]
    assert f"from an empty runs folder, {_minutes(seconds)} (2 CPU cores" in runtime_note("08_choices", "cpu").data


def test_the_readme_states_the_recorded_times():
    timings = json.loads((ROOT / "book" / TIMINGS_FILE).read_text())["cpu"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    for seconds in (timings["fresh_make_book_seconds"], timings["from_empty"]["08_choices"]):
        assert f"{seconds:,.0f} s ({_minutes(seconds)})" in readme
    assert f"{_minutes(sum(timings['cached'].values()))} in total" in readme
    assert set(timings["cached"]) == set(CHAPTERS)  # the total covers every chapter
