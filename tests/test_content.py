"""The content checker: what an executed chapter shows, read back from its outputs."""
import io
import json
import os
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import nbformat
import pytest

from memrnn.book import CHAPTERS, run
from memrnn.content import beyond_verdicts, check_book, check_notebook, code_stamp, empty_panels, verdict_for
from memrnn.display import CLAIM_CHAPTERS, box_html

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _svg(fig) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg")
    plt.close(fig)
    return out.getvalue()


@pytest.mark.parametrize("draw, empty", [
    (lambda ax: ax.plot([0, 1], [1, 0]), 0),
    (lambda ax: ax.bar([0, 1], [1, 2]), 0),
    (lambda ax: ax.scatter([0, 1], [1, 0]), 0),
    (lambda ax: ax.imshow([[0, 1], [1, 0]]), 0),
    (lambda ax: ax.fill_between([0, 1], [0, 0], [1, 1]), 0),
    (lambda ax: ax.errorbar([0, 1], [1, 0], yerr=[0.1, 0.1], fmt="none"), 0),
    (lambda ax: ax.set_title("a title and labels only"), 1),
    (lambda ax: ax.text(0.5, 0.5, "no data"), 1),
])
def test_a_panel_counts_as_empty_only_when_nothing_is_drawn_in_it(draw, empty):
    fig, (ax, drawn) = plt.subplots(1, 2)
    draw(ax)
    drawn.plot([0, 1], [0, 1])  # a second panel with data: only the first decides
    assert empty_panels(_svg(fig)) == empty


def test_empty_panels_are_counted_in_a_3d_figure():
    fig = plt.figure()
    fig.add_subplot(1, 2, 1, projection="3d").scatter([0, 1], [0, 1], [0, 1])
    fig.add_subplot(1, 2, 2, projection="3d")
    assert empty_panels(_svg(fig)) == 1


def _notebook(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


def _code(outputs, tags=()):
    cell = nbformat.v4.new_code_cell("pass", metadata={"tags": list(tags)})
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def _markdown(text):
    return {"output_type": "display_data", "data": {"text/markdown": text, "text/plain": "<Markdown>"}, "metadata": {}}


def _table(rows, caption="Speeds per condition."):
    body = "".join(f"| {r} | 1 |\n" for r in rows)
    return _markdown(f"```{{table}} {caption}\n:align: left\n\n| condition | speed |\n|---|---|\n{body}```")


def test_a_clean_page_passes():
    box = "> **What ran.** preset: `smoke` · code: commit abc1234 · date: 2026-01-01"
    notebook = _notebook(nbformat.v4.new_markdown_cell("# C9 · A page"),
                         _code([_markdown(box), _table(["mnist-5k · GRU · DeCu"]),
                                {"output_type": "stream", "name": "stderr", "text": "100%|##| 4/4\n"}],  # dropped
                               ["hide-input"]),
                         _code([{"output_type": "stream", "name": "stdout", "text": "C1: reproduced\n"}],
                               ["nbval-check-output", "remove-cell"]))
    assert check_notebook(notebook) == []
    assert code_stamp(notebook) == "commit abc1234"


@pytest.mark.parametrize("output, tags, problem", [
    (_table([]), [], "a table with no row: 'Speeds per condition.'"),
    (_table(["x"], "Valleys (mnist-5k-gru-decu-1c167a89497f)."), [],
     "a run's hash where a name belongs: mnist-5k-gru-decu-1c167a89497f"),
    ({"output_type": "stream", "name": "stdout", "text": "network ready in 0.0 s\n"}, ["hide-input"],
     "a raw print on the page: 'network ready in 0.0 s'"),
    ({"output_type": "stream", "name": "stderr",
      "text": "claims.py:332: RuntimeWarning: divide by zero encountered in divide\n  moved / spread\n"},
     ["remove-cell"], "a Python warning: RuntimeWarning: divide by zero encountered in divide"),
])
def test_each_problem_is_named_with_its_cell(output, tags, problem):
    notebook = _notebook(nbformat.v4.new_markdown_cell("A page, no heading."), _code([output], tags))
    assert check_notebook(notebook) == [f"cell 1: {problem}"]


def test_a_section_that_computes_but_shows_nothing_is_reported():
    hidden = _code([{"output_type": "stream", "name": "stdout", "text": "C1 (trained)\n"}], ["remove-cell"])
    notebook = _notebook(nbformat.v4.new_markdown_cell("## Which claims depend on which choice\nProse."), hidden,
                         nbformat.v4.new_markdown_cell("## Next\nProse only: nothing computed, nothing owed."))
    assert check_notebook(notebook) == ["the section 'Which claims depend on which choice' shows nothing it computes"]


def test_chapter_03_as_first_committed_is_caught_with_its_empty_figure_and_table():
    """The execution that shipped an empty figure (its other cells' outputs stripped to keep the file small)."""
    problems = check_notebook(nbformat.read(ROOT / "tests" / "data" / "03_slowpoints_as_first_committed.ipynb",
                                            as_version=4))
    assert "cell 13: a figure with 3 empty panel(s)" in problems
    assert any(p.startswith("cell 14: a table with no row: 'Following the slow valleys") for p in problems)
    assert "cell 17: a Python warning: RuntimeWarning: divide by zero encountered in divide" in problems


@pytest.fixture(scope="module")
def committed_problems():
    return check_book(ROOT / "book", CHAPTERS)


@pytest.mark.parametrize("name", CHAPTERS)
def test_committed_chapter_shows_no_problem(name, committed_problems):
    assert committed_problems.get(name, []) == []


def test_the_runner_refuses_to_keep_a_chapter_that_shows_a_problem(tmp_path):
    shutil.copytree(ROOT / "book", tmp_path / "book")
    (tmp_path / "book" / "src" / "scorecard.py").write_text(
        '# %% [markdown]\n# # A chapter\n\n# %% tags=["parameters"]\npreset: str = "cpu"\n\n'
        '# %%\nprint("network ready in 0.0 s")\n')
    target = tmp_path / "book" / "scorecard.ipynb"
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match=r"chapter scorecard ran but shows .*a raw print on the page: "
                                           r"'network ready in 0.0 s'.*scorecard.ipynb is unchanged"):
        run(tmp_path, "smoke", ["scorecard"], {"scheduler": "sync"}, progress=False)
    assert target.read_bytes() == before
    assert (tmp_path / "book" / ".scorecard.partial.ipynb").exists()
    assert "MEMRNN_CHAPTER" not in os.environ


def _finding(text):
    html = box_html("What we found", "inconclusive", text)
    return _code([{"output_type": "display_data", "data": {"text/html": html, "text/plain": "<HTML>"},
                   "metadata": {}}], ["hide-input"])


SUMMARY = {"C3": {"verdict": "inconclusive"}, "C4": {"verdict": "reproduced"},
           "C6": {"verdict": "partly reproduced",
                  "by_dataset": {"mnist-5k": {"verdict": "reproduced"}, "fashion-mnist": "not reproduced"}}}


def test_a_verdict_is_read_overall_or_per_dataset_in_either_shape():
    assert verdict_for(SUMMARY, "C3") == verdict_for(SUMMARY, "C3", "mnist-5k") == "inconclusive"
    assert verdict_for(SUMMARY, "C6") == "partly reproduced"
    assert verdict_for(SUMMARY, "C6", "mnist-5k") == "reproduced"  # a record with a verdict
    assert verdict_for(SUMMARY, "C6", "fashion-mnist") == "not reproduced"  # the verdict alone
    assert verdict_for(SUMMARY, "C9") is None


@pytest.mark.parametrize("text, claim, flagged", [
    ("Memories sit at slow points (C3). Speed predicts memory (C4).", None, ["C3"]),  # C4 is reproduced
    ("Memories sit at slow points (C3 is inconclusive here).", None, []),
    ("The claim is **partly reproduced** here: one condition fails.", "C6", []),
    ("The claim is **reproduced** here.", "C6", ["C6"]),
    ("On mnist-5k the penalty helps (C6). On fashion-mnist it does not (C6: not reproduced).", None, []),
    ("On fashion-mnist the penalty helps (C6).", None, ["C6 on fashion-mnist"]),
    ("The penalty helps (C6).", None, ["C6"]),  # named without a dataset: the overall verdict
])
def test_a_finding_states_a_claim_as_fact_only_where_it_is_reproduced(text, claim, flagged):
    found = beyond_verdicts(_notebook(_finding(text)), SUMMARY, claim)
    assert [f.split(" is ")[0] for f in found] == flagged


@pytest.fixture(scope="module")
def summary():
    return json.loads((ROOT / "book" / "verdicts.json").read_text())


@pytest.mark.parametrize("name", CHAPTERS)
def test_committed_findings_stay_within_the_verdicts(name, summary):
    notebook = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
    claim = {chapter: c for c, chapter in CLAIM_CHAPTERS.items()}.get(name)
    assert beyond_verdicts(notebook, summary, claim) == []


def test_a_book_figure_is_drawn_for_a_phone():
    """At most plots.WIDTH wide, no text under 9 pt, log ticks in plain text (no small superscripts)."""
    from memrnn import plots

    fig = plots.holding_vs_speed(np.array([1e-9, 1e-7, 1e-5]), np.array([0.9, 0.95, 0.99]),
                                 np.array([10.0, 100.0, 1000.0]), 0.2)
    fig.canvas.draw()
    assert fig.get_figwidth() <= plots.WIDTH
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert min(t.get_fontsize() for t in texts) >= plots.MIN_FONT
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert ticks and all("$" not in t for t in ticks) and "1e-7" in ticks
    assert [plots._plain_log_tick(v, None) for v in (1e-3, 0.01, 10, 1e4, 1e5, 3e-3)] == ["1e-3", "0.01", "10", "10000",
                                                                                          "1e5", ""]
    plt.close(fig)

    @plots.page_figure
    def wide():
        return plt.figure(figsize=(6.5, 3))
    with pytest.raises(ValueError, match=f"wide draws 6.5 in wide; the page takes at most {plots.WIDTH} in"):
        wide()
