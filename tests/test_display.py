"""What the reader sees of verdicts: boxes that render anywhere, the committed summary the scorecard
and the landing page read (in step with the committed chapters, fetched by address when a notebook is
opened alone), and one repository address that everything names."""
import http.server
import json
import re
import threading
from pathlib import Path

import nbformat
import pytest
import yaml

from memrnn import REPOSITORY
from memrnn.book import CHAPTERS, code_hash, source_notebook
from memrnn.display import (CLAIM_CHAPTERS, OUTCOMES, RESULTS_FILE, SUMMARY_FILE, badge, box_html, inline_html,
                            load_summary, published_summary, read_summary, results_markdown, statement, write_summary)
from memrnn.presets import BOOK_DATASETS, make_config

ROOT = Path(__file__).resolve().parents[1]


def test_inline_markdown_becomes_escaped_html():
    assert inline_html("**C2: not reproduced** for `cpu`, *median* a<b") == (
        "<strong>C2: not reproduced</strong> for <code>cpu</code>, <em>median</em> a&lt;b")
    assert inline_html("2 * 3 * 4") == "2 * 3 * 4"  # arithmetic is not emphasis


def test_boxes_take_their_outcomes_colour_and_fold_the_evidence():
    for verdict, (_, colour) in OUTCOMES.items():
        text = box_html(f"C1: {verdict}", verdict, "Why: ...", {"Statistic": "r = 0.5"})
        assert colour in text and "<details>" in text and "<em>Statistic:</em> r = 0.5" in text
    assert "<details>" not in box_html("What we found", "reproduced", "text")
    with pytest.raises(ValueError, match="'dramatic' must be one of"):
        box_html("C6", "dramatic", "text")
    assert badge("partly reproduced") == "{bdg-warning}`partly reproduced`"


def _record(claim, chapter, verdict="reproduced", sha="abc", preset="smoke"):
    return {"claim": claim, "verdict": verdict, "reason": "because", "statistic": "s", "scope": {}, "premises": [],
            "detectable": "d", "preset": preset, "networks": 5, "chapter": chapter, "code_sha256": sha,
            "details": {"large": list(range(100))}}


def _chapter(book, name, sha, preset="smoke"):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# C2 · Do memories last?\n\n**Claim (paper):** networks differ a lot. **Verdict rule** below.")])
    notebook.metadata["memrnn"] = {"code_sha256": sha, "preset": preset}
    nbformat.write(notebook, book / f"{name}.ipynb")


def test_summary_keeps_only_what_the_committed_chapters_produced(tmp_path):
    _chapter(tmp_path, "02_extrapolation", "abc")
    _chapter(tmp_path, "03_slowpoints", "other code")
    summary = write_summary(tmp_path, [_record("C2", "02_extrapolation"), _record("C3", "03_slowpoints"),
                                       _record("C4", "04_speed_predicts_memory")])
    assert list(summary) == ["C2"]  # C3: recorded by other code; C4: no chapter notebook
    assert summary["C2"]["statement"] == "networks differ a lot." and summary["C2"]["question"] == "Do memories last?"
    assert "details" not in summary["C2"]  # the summary is small enough to commit
    assert read_summary(tmp_path) == summary
    assert "{bdg-success}`reproduced`" in (tmp_path / RESULTS_FILE).read_text()
    # a later run of another chapter keeps C2; a rerun of C2 at another preset drops it
    _chapter(tmp_path, "03_slowpoints", "abc")
    assert list(write_summary(tmp_path, [_record("C3", "03_slowpoints")])) == ["C2", "C3"]
    # a record from outside the runner (no stamp, e.g. nbval re-executing a chapter) leaves the verdict
    # of the committed chapter in place
    assert write_summary(tmp_path, [{**_record("C2", None, "not reproduced"), "code_sha256": None}])["C2"][
        "verdict"] == "reproduced"
    _chapter(tmp_path, "02_extrapolation", "abc", preset="cpu")
    assert list(write_summary(tmp_path, [])) == ["C3"]


def test_the_committed_summary_is_what_the_committed_chapters_recorded():
    book = ROOT / "book"
    summary = read_summary(book)
    assert set(summary) == set(CLAIM_CHAPTERS), "rerun `memrnn book run`: book/verdicts.json lacks claims"
    for claim, record in summary.items():
        notebook = nbformat.read(book / f"{CLAIM_CHAPTERS[claim]}.ipynb", as_version=4)
        assert record["code_sha256"] == code_hash(notebook) == notebook.metadata["memrnn"]["code_sha256"], claim
        assert record["statement"] == statement(notebook) and record["verdict"] in OUTCOMES, claim
    assert (book / RESULTS_FILE).read_text() == results_markdown(summary)
    assert (book / "figures" / "headline.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_a_notebook_opened_alone_reads_the_summary_by_address(tmp_path, monkeypatch, capsys):
    served = tmp_path / "served"
    served.mkdir()
    (served / SUMMARY_FILE).write_text(json.dumps({"C1": _record("C1", "01_task")}))
    (served / "broken.json").write_text(json.dumps({"C1": "reproduced"}))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert load_summary(f"{base}/{SUMMARY_FILE}")["C1"]["verdict"] == "reproduced"
        with pytest.raises(ValueError, match="is not a verdict summary"):
            load_summary(f"{base}/broken.json")
        with pytest.raises(OSError, match="could not read the verdict summary from .*missing.json"):
            load_summary(f"{base}/missing.json")
        monkeypatch.chdir(tmp_path)  # no summary beside the notebook: the repository's is fetched
        monkeypatch.setattr("memrnn.display.published_summary", lambda: f"{base}/{SUMMARY_FILE}")
        assert list(load_summary()) == ["C1"] and "is not beside this notebook" in capsys.readouterr().out
    finally:
        server.shutdown()


def test_one_repository_address_everywhere():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == REPOSITORY
    assert published_summary() == REPOSITORY.replace("github.com", "raw.githubusercontent.com") + "/main/book/verdicts.json"
    owner, name = REPOSITORY.removeprefix("https://github.com/").split("/")
    named, pages = set(), set()
    for path in [*(ROOT / "book" / "src").glob("*.py"), ROOT / "README.md", ROOT / "book" / "intro.md",
                 ROOT / "pyproject.toml", ROOT / "environment.yml", ROOT / "postBuild"]:
        named |= {m.rstrip(".)/") for m in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", path.read_text())}
        pages |= set(re.findall(r"https://[\w-]+\.github\.io/[\w.-]+", path.read_text()))
    assert named - {"https://github.com/DoronHaviv/MemoryRNN"} <= {REPOSITORY, REPOSITORY + ".git"}, named
    assert pages <= {f"https://{owner}.github.io/{name}"}, pages  # where GitHub Pages serves the book
    for name in CHAPTERS:
        install = next(c.source for c in source_notebook(ROOT / "book" / "src" / f"{name}.py").cells
                       if "pip" in c.source and "install" in c.source)
        assert f"git+{REPOSITORY}" in install, name


def test_the_default_runs_folder_on_colab_is_under_content(tmp_path, monkeypatch):
    from memrnn import chapter

    monkeypatch.setattr(chapter, "COLAB_RUNS", str(tmp_path / "content-runs"))
    assert chapter.prepare_runs("../runs", on_colab=True) == str(tmp_path / "content-runs")
    assert (tmp_path / "content-runs").is_dir()
    assert chapter.prepare_runs(str(tmp_path / "mine"), on_colab=True) == str(tmp_path / "mine")  # a chosen folder stays
    monkeypatch.chdir(tmp_path)
    assert chapter.prepare_runs("../runs", on_colab=False) == "../runs"  # the repository's layout


def test_the_committed_cpu_verdicts_speak_for_the_editions_datasets_and_scale():
    """C1-C4 on every dataset of the cpu edition, C5 and C6 at least on its first; each at the preset's length."""
    summary = read_summary(ROOT / "book")
    config = make_config("cpu")
    for claim, record in summary.items():
        if record["preset"] != "cpu":
            continue
        wanted = BOOK_DATASETS["cpu"] if claim in ("C1", "C2", "C3", "C4") else BOOK_DATASETS["cpu"][:1]
        assert set(wanted) <= set(record["scope"]["datasets"]), claim
        assert record["scope"]["steps"] == config.steps, claim
