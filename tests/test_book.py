"""The book: every chapter executes at the smoke preset, its verdict cells reproduce under nbval,
the commands the intro shows run as written, the committed chapters match their sources and open on
Colab, the HTML builds without warnings, and every page loads in a headless browser at a desktop and a
phone width with its figures captioned, launch buttons and working internal links, and no output wider
than the page."""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from memrnn import store
from memrnn.book import (CHAPTERS, COLAB_METADATA, FRESH_KEY, TIMINGS_FILE, _minutes, code_hash, estimate,
                         missing_from_edition, record_fresh_time, record_timing, run, set_parameters, source_notebook)
from memrnn.chapter import code_version
from memrnn.presets import CPU_FAST_SPEEDUP, CPU_SECONDS_PER_NETWORK_STEP, make_config

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _book_layout(root: Path) -> Path:
    """A copy of the book's sources and configuration, without executed chapters."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "_static", root / "_static")
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("*.ipynb"))
    return root


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """The whole book executed at the smoke preset, in a copy of the book's layout."""
    root = _book_layout(tmp_path_factory.mktemp("book"))
    # the chapters' task graphs run in-process here (a local Dask cluster per chapter would cost more
    # than the smoke networks themselves; the engine has its own tests), chosen by the chapters'
    # `scheduler` parameter, which must win over the environment: the dead scheduler named there fails
    # any call that ignores the parameter
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMRNN_SCHEDULER", "tcp://127.0.0.1:1")
        run(root, "smoke", parameters={"runs": str(root / "runs"), "scheduler": "sync"}, progress=False)
    return root


def _code_cells(notebook):
    return [c.source for c in notebook.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def test_every_chapter_executes_and_states_a_verdict(smoke_book):
    for name in CHAPTERS:
        notebook = nbformat.read(smoke_book / "book" / f"{name}.ipynb", as_version=4)
        errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, name
        _assert_opens_as_run(notebook, name)
        parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        assert 'preset: str = "smoke"' in parameters.source, name
        checked = [c for c in notebook.cells if "nbval-check-output" in c.metadata.get("tags", [])]
        assert checked and checked[-1].outputs, name
    verdicts = sorted((smoke_book / "runs" / "verdicts").glob("*.json"))
    assert [p.stem for p in verdicts] == ["C1", "C2", "C3", "C4", "C5", "C6"]


def test_every_chapter_shows_what_it_computed(smoke_book):
    """No empty panel or table, no warning, raw print or run hash, one code stamp (memrnn.content)."""
    from memrnn.content import check_book

    assert check_book(smoke_book / "book", CHAPTERS) == {}


def test_findings_state_claims_no_further_than_their_verdicts(smoke_book):
    from memrnn.content import beyond_verdicts
    from memrnn.display import CLAIM_CHAPTERS

    summary = json.loads((smoke_book / "book" / "verdicts.json").read_text())
    claim_of = {chapter: claim for claim, chapter in CLAIM_CHAPTERS.items()}
    for name in CHAPTERS:
        notebook = nbformat.read(smoke_book / "book" / f"{name}.ipynb", as_version=4)
        assert beyond_verdicts(notebook, summary, claim_of.get(name)) == [], name


def test_verdict_cells_reproduce_under_nbval(smoke_book):
    notebooks = [str(smoke_book / "book" / f"{name}.ipynb") for name in CHAPTERS]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                             *notebooks], cwd=smoke_book / "book", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def _assert_opens_as_run(notebook, name):
    """No papermill injected cell (the parameters cell shows what ran), a kernel, a GPU on Colab, the
    install cell."""
    assert not [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])], name
    assert notebook.metadata["kernelspec"]["name"] == "python3", name
    assert notebook.metadata["accelerator"] == COLAB_METADATA["accelerator"] == "GPU", name
    assert any("pip" in c.source and "install" in c.source for c in notebook.cells if c.cell_type == "code"), name


def test_parameters_are_written_into_the_parameters_cell():
    notebook = source_notebook(ROOT / "book" / "src" / "02_extrapolation.py")
    before = next(c.source for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    set_parameters(notebook, {"preset": "cpu", "archs": "gru", "seeds": 3, "not_a_parameter": 1})
    after = next(c.source for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert [b.split("#")[0].split() for _, b in changed] == [["archs:", "str", "=", '"gru"'], ["seeds:", "int", "=", "3"]]
    assert [a.split("#")[1] for a, _ in changed] == [b.split("#")[1] for _, b in changed]  # comments kept


def _intro_commands(word):
    """The lines of the intro's bash blocks that start with ``word``, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "book" / "intro.md").read_text(), re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.startswith(word)]


def test_intro_commands_run_as_written(smoke_book):
    """The intro's papermill commands, verbatim, on an executed chapter (from book/, as it says), and
    the runner's command with --set."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    commands = _intro_commands("papermill")
    assert len(commands) == 2
    for command in commands:
        result = subprocess.run(shlex.split(command), cwd=smoke_book / "book", capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
        if "--help-notebook" in command:
            for line in ("preset: str", "archs: str", "seeds: int", "runs: str"):
                assert line in result.stdout, result.stdout
            assert "comma-separated" in result.stdout and "networks per condition" in result.stdout
    rerun = nbformat.read(command.split()[2], as_version=4)
    assert not [o for c in rerun.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    [runner] = [c for c in _intro_commands("memrnn book run") if "--set" in c]
    result = subprocess.run(shlex.split(runner), cwd=smoke_book, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    chapter = nbformat.read(smoke_book / "book" / "02_extrapolation.ipynb", as_version=4)
    parameters = next(c.source for c in chapter.cells if "parameters" in c.metadata.get("tags", []))
    assert 'archs: str = "gru"' in parameters and "seeds: int = 2" in parameters
    assert chapter.metadata["memrnn"]["parameters"] == {"preset": "smoke", "archs": "gru", "seeds": 2}
    assert "chapter(s) in" in result.stdout


def test_a_misspelt_parameter_is_refused_naming_the_allowed_ones(tmp_path, capsys):
    from memrnn.cli import main

    assert main(["book", "run", "--root", str(ROOT), "--preset", "smoke", "--set", "sedes=3", "--no-build"]) == 2
    message = capsys.readouterr().err
    assert "'sedes'" in message and "'seeds'" in message and "'archs'" in message


def test_a_failed_execution_leaves_the_chapter_notebook_as_it_was(tmp_path):
    """papermill writes its output as it goes; a chapter that fails keeps its last good notebook."""
    shutil.copytree(ROOT / "book", tmp_path / "book")
    target = tmp_path / "book" / "02_extrapolation.ipynb"
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="02_extrapolation.ipynb is unchanged.*not-an-arch|not-an-arch.*unchanged"):
        run(tmp_path, "smoke", ["02_extrapolation"], {"runs": str(tmp_path / "runs"), "scheduler": "sync",
                                                      "archs": "not-an-arch"}, progress=False)
    assert target.read_bytes() == before
    assert "MEMRNN_CHAPTER" not in os.environ  # the chapter's stamp is not left for what runs next
    failed = nbformat.read(tmp_path / "book" / ".02_extrapolation.partial.ipynb", as_version=4)
    assert [o for c in failed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def test_tables_are_captioned_and_escape_the_column_separator():
    """The book reads the numbered MyST table; Jupyter and Colab read the HTML one."""
    from memrnn.chapter import markdown_table

    table = markdown_table(["kind", "share"], [["linearly stable (all |eigenvalues| < 1)", "32%"]], "Stability.")
    markdown = table._repr_markdown_()
    assert markdown.startswith("```{table} Stability.\n") and markdown.endswith("\n```")
    assert "| linearly stable (all \\|eigenvalues\\| < 1) | 32% |" in markdown.splitlines()
    html = table._repr_html_()
    assert "<caption" in html and "<td>linearly stable (all |eigenvalues| &lt; 1)</td><td>32%</td>" in html
    with pytest.raises(ValueError, match="needs a caption"):
        markdown_table(["kind"], [], "")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert ["html", "text/markdown", 25] in config["nb_mime_priority_overrides"]  # text/html is 30


@pytest.mark.parametrize("name", CHAPTERS)
def test_committed_chapter_is_its_source_executed(name):
    committed = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
    _assert_opens_as_run(committed, name)
    stamp = committed.metadata["memrnn"]
    assert stamp["code_sha256"] == code_hash(committed), "the notebook's code was edited after it ran"
    source = source_notebook(ROOT / "book" / "src" / f"{name}.py")
    set_parameters(source, stamp.get("parameters", {"preset": stamp["preset"]}))  # e.g. the GPU edition's
    assert _code_cells(committed) == _code_cells(source), \
        f"book/src/{name}.py changed since the chapter was executed: rerun `memrnn book run --chapters {name}`"
    assert stamp["preset"] in ("cpu", "gpu", "paper")
    for cell in committed.cells:
        if "figure" in cell.metadata.get("mystnb", {}):
            # myst-nb puts every output of a figure cell in the figure: a second one (a progress bar)
            # repeats the figure's label, and the build fails
            assert [list(o.get("data", {})) for o in cell.outputs] == [["image/svg+xml", "text/plain"]], \
                f"{name}: the figure cell {cell.metadata['mystnb']['figure']['name']} must show its figure alone"


@pytest.fixture(scope="module")
def html(smoke_book):
    subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(smoke_book), "-W", "-q"],
                   check=True, capture_output=True)
    return smoke_book / "_build" / "html"


def test_book_builds_without_warnings(html):
    for name in CHAPTERS:
        assert (html / "book" / f"{name}.html").exists()


NEEDS_CHROMIUM = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                    reason="needs Debian's chromium and chromium-driver (installed by .ci/run)")


def _chromium(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@NEEDS_CHROMIUM
def test_every_page_loads_with_figures_and_links(html, tmp_path):
    driver = _chromium(tmp_path)
    try:
        pages = sorted(html.glob("book/*.html"))
        assert len(pages) == len(CHAPTERS) + 3  # + intro, deviations, references
        for width in (1280, 400):
            driver.set_window_size(width, 900)
            for page in pages:
                _check_page(driver, page, width)
    finally:
        driver.quit()


# outputs (and anything inside them) whose content is wider than the box the page gives them; a table
# scrolls sideways by design (its cells never break words), so only its cells are held to their boxes
WIDER_THAN_CONTAINER = """
const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
return [...document.querySelectorAll('div.cell_output, div.cell_output *, figure, figure img')]
  .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).display !== 'inline' && !scrolls(e)
               || e.getBoundingClientRect().right > document.querySelector('main').getBoundingClientRect().right + 1
                  && !e.closest('table'))
  .map(e => e.tagName + '.' + e.className + ': ' + (e.innerText || e.src || '').slice(0, 60));
"""
# table cells narrower than their longest word (a word broken mid-word, as "n/ot/re/pr/o/d/u/ce/d" once was);
# "long-delay" may break after its hyphen
WORDS_BROKEN = r"""
return [...document.querySelectorAll('div.cell_output td, div.cell_output th')].filter(td => {
  // a word (a line may break at a space or after a hyphen or dash) whose letters sit on two lines
  const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
  for (let node; (node = walker.nextNode());) {
    const word = /[^\s\-–—]+[\-–—]?/g;
    for (let m; (m = word.exec(node.data));) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const rects = [...range.getClientRects()].filter(r => r.width > 0);
      if (rects.some(r => Math.abs(r.top - rects[0].top) > 1)) return true;
    }
  }
  return false;
}).map(td => td.innerText.slice(0, 40));
"""


# per table, how many px of it lie beyond the page's right edge (hidden, or reachable only by scrolling)
TABLE_HIDDEN = """
const right = document.querySelector('article').getBoundingClientRect().right;
return [...document.querySelectorAll('article table')].map(t => {
  const box = t.getBoundingClientRect();
  return [(t.querySelector('caption') || t).innerText.slice(0, 50), Math.max(t.scrollWidth, box.width) - (right - box.left)];
}).filter(([, hidden]) => hidden > 1);
"""
# numbers (a token with a digit) whose characters sit on two lines, as "6.5e-/07" once did
NUMBERS_BROKEN = r"""
return [...document.querySelectorAll('article td, article th')].flatMap(td => {
  const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT), broken = [];
  for (let node; (node = walker.nextNode());) {
    for (const m of node.data.matchAll(/\S*\d\S*/g)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const rects = [...range.getClientRects()].filter(r => r.width > 0);
      if (rects.some(r => Math.abs(r.top - rects[0].top) > 1)) broken.push(m[0]);
    }
  }
  return broken;
});
"""
MIN_FIGURE_TEXT_PX = 9


def _figure_text_px(driver) -> dict:
    """Smallest text of each SVG figure as shown, in CSS px: the SVG's smallest font size (in its own
    units) times the shown width over the SVG's width in those units."""
    import xml.etree.ElementTree as ET

    shown = driver.execute_script("return [...document.querySelectorAll('article img')]"
                                  ".map(i => [i.src, i.getBoundingClientRect().width])")
    sizes = {}
    for src, width in shown:
        if not src.startswith("file:") or not src.endswith(".svg"):
            continue
        svg = Path(src.removeprefix("file://")).read_text()
        fonts = [float(f) for f in re.findall(r"font(?:-size)?:\s*([\d.]+)px", svg)]
        natural = float(ET.fromstring(svg).get("viewBox").split()[2])
        if fonts and width:
            sizes[src.rsplit("/", 1)[-1]] = round(min(fonts) * width / natural, 1)
    return sizes


def _phone_problems(driver, page) -> list[str]:
    """What a reader on a 400 px phone cannot read on ``page``: table columns beyond the screen,
    numbers broken across lines, figure text under 9 CSS px."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_window_size(400, 900)
    driver.get(page.as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
    problems = [f"table {name!r}: {hidden:.0f} px beyond the screen" for name, hidden in driver.execute_script(TABLE_HIDDEN)]
    problems += [f"number broken across lines: {n!r}" for n in driver.execute_script(NUMBERS_BROKEN)]
    problems += [f"figure {name}: text {px} px" for name, px in _figure_text_px(driver).items() if px < MIN_FIGURE_TEXT_PX]
    return problems


@NEEDS_CHROMIUM
def test_every_page_reads_on_a_phone(html, tmp_path):
    driver = _chromium(tmp_path)
    try:
        problems = {page.name: _phone_problems(driver, page) for page in sorted(html.glob("book/*.html"))}
    finally:
        driver.quit()
    assert not {name: found for name, found in problems.items() if found}



@pytest.fixture(scope="module")
def committed_html(tmp_path_factory):
    """The committed book rendered as it stands (no execution)."""
    root = tmp_path_factory.mktemp("committed")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "_static", root / "_static")
    shutil.copytree(ROOT / "book", root / "book")
    subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "-q"],
                   check=True, capture_output=True)
    return root / "_build" / "html"


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    driver = _chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


@NEEDS_CHROMIUM
@pytest.mark.parametrize("name", ("intro", "deviations", "references", *CHAPTERS))
def test_committed_page_reads_on_a_phone(name, committed_html, phone):
    assert _phone_problems(phone, committed_html / "book" / f"{name}.html") == []


def _check_page(driver, page, width):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert driver.find_elements("css selector", "main h1"), f"{page.name} has no title"
    broken = driver.execute_script(
        "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"{page.name}: images that did not load: {broken}"
    if page.stem in CHAPTERS[:-1]:
        assert driver.execute_script("return document.images.length") > 0, f"{page.name} shows no figure"
    links = driver.execute_script(
        "return [...document.querySelectorAll('a[href]')].map(a => a.href).filter(h => h.startsWith('file:'))")
    for link in links:
        target = Path(link.split("#")[0].removeprefix("file://"))
        assert target.exists(), f"{page.name} links to missing {target}"
    wide = driver.execute_script(WIDER_THAN_CONTAINER)
    assert not wide, f"{page.name} at {width} px: outputs wider than the page: {wide}"
    broken_words = driver.execute_script(WORDS_BROKEN)
    assert not broken_words, f"{page.name} at {width} px: table cells narrower than a word: {broken_words}"
    text = driver.execute_script("return document.querySelector('main').innerText")
    assert "{glue" not in text and "```" not in text, f"{page.name}: raw Markdown shown to the reader"
    if page.stem in CHAPTERS[:6]:
        boxes = driver.execute_script("return [...document.querySelectorAll('.memrnn-box strong')].map(b => b.innerText)")
        assert any(b.startswith("Verdict rule") for b in boxes) and any(": " in b and "C" in b[:3] for b in boxes) \
            and "What we found" in boxes, f"{page.name}: rule, verdict and finding boxes: {boxes}"
    if page.stem in ("intro", "scorecard"):
        shown = driver.execute_script("return document.querySelectorAll('.sd-badge, .memrnn-box').length")
        assert shown >= 6, f"{page.name} shows {shown} verdicts"
    uncaptioned = driver.execute_script(
        "return [...document.querySelectorAll('article img')].filter(i => !i.closest('figure')"
        " || !i.closest('figure').querySelector('figcaption')).map(i => i.src.slice(-60))")
    assert not uncaptioned, f"{page.name}: figures without a caption: {uncaptioned}"
    if page.stem in CHAPTERS:
        launch = driver.execute_script(
            "return [...document.querySelectorAll('a[href]')].map(a => a.href)"
            ".filter(h => h.includes('colab.research.google.com') || h.includes('mybinder.org'))")
        assert len(launch) >= 2, f"{page.name}: no Colab and Binder launch buttons"


def test_an_edition_from_another_machine_is_checked_for_what_it_lacks(tmp_path):
    (tmp_path / "book").mkdir()
    for name in CHAPTERS:
        notebook = nbformat.v4.new_notebook(metadata={"memrnn": {"preset": "gpu"}})
        nbformat.write(notebook, tmp_path / "book" / f"{name}.ipynb")
    for folder in ("verdicts", "gpu-logs"):
        (tmp_path / "runs" / folder).mkdir(parents=True)
    for claim in ("C1", "C2", "C3", "C4", "C5", "C6"):
        (tmp_path / "runs" / "verdicts" / f"{claim}.json").write_text("{}")
    table = "network-steps/s\n    E       loop   eager fp32\n    1      310.2   290.0 (  0.9x)\n"
    for arch in ("gru", "lstm"):
        (tmp_path / "runs" / "gpu-logs" / f"throughput-{arch}.log").write_text(table)
    (tmp_path / "runs" / "campaign-gpu-mnist-5k.json").write_text("{}")
    assert missing_from_edition(tmp_path, "gpu", ["mnist-5k"]) == []

    nbformat.write(nbformat.v4.new_notebook(metadata={"memrnn": {"preset": "cpu"}}), tmp_path / "book" / "03_slowpoints.ipynb")
    (tmp_path / "book" / "scorecard.ipynb").unlink()
    (tmp_path / "runs" / "verdicts" / "C4.json").unlink()
    (tmp_path / "runs" / "gpu-logs" / "throughput-lstm.log").write_text(table.rsplit("\n    1", 1)[0])
    assert missing_from_edition(tmp_path, "gpu", ["mnist-5k", "fashion-mnist"]) == [
        "chapter 03_slowpoints executed at another preset", "chapter scorecard not executed", "no verdict for C4",
        "no throughput row for LSTM", "no campaign on fashion-mnist"]


def test_code_version_names_the_commit_and_says_when_the_code_differs_from_it(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    (tmp_path / "memrnn").mkdir(parents=True)
    (tmp_path / "book" / "src").mkdir(parents=True)
    (tmp_path / "memrnn" / "task.py").write_text("x = 1\n")
    (tmp_path / "book" / "src" / "01.py").write_text("y = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True,
                            text=True).stdout.strip()
    package = tmp_path / "memrnn"
    assert code_version(package) == f"commit {commit}"
    (tmp_path / "book" / "01.ipynb").write_text("{}")  # an executed chapter is output, not code
    assert code_version(package) == f"commit {commit}"
    (tmp_path / "book" / "src" / "01.py").write_text("y = 2\n")
    assert code_version(package) == f"commit {commit} with uncommitted changes"
    git("checkout", "--", "book/src/01.py")
    (tmp_path / "memrnn" / "new.py").write_text("")
    assert code_version(package) == f"commit {commit} with uncommitted changes"
    assert code_version(tmp_path.parent).startswith("memrnn ")  # no checkout: the package's version


def test_a_book_execution_from_an_empty_runs_folder_keeps_each_chapter_time(smoke_book):
    timings = json.loads((smoke_book / "book" / TIMINGS_FILE).read_text())["smoke"]
    assert set(timings["from_empty"]) == set(CHAPTERS) and all(t > 0 for t in timings["from_empty"].values())
    text = estimate(smoke_book / "book" / TIMINGS_FILE, "smoke", CHAPTERS, smoke_book / "nothing")
    assert f"{_minutes(sum(timings['from_empty'].values()))} from an empty runs folder, measured" in text


def _runs(folder, *names):
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "config.json").write_text("{}")
    return folder


def test_the_estimate_reads_the_recorded_times_and_counts_the_runs_there(tmp_path):
    path = tmp_path / TIMINGS_FILE
    record_timing(path, "cpu", "01_task", 3000.0, "from_empty")
    record_timing(path, "cpu", "02_extrapolation", 600.0, "from_empty")
    record_timing(path, "cpu", "01_task", 10.0, "cached")
    runs = _runs(tmp_path / "runs", "a", "b")
    (runs / "verdicts").mkdir()  # not a run
    empty = tmp_path / "empty"
    assert "60.0 min from an empty runs folder, measured" in estimate(path, "cpu", ["01_task", "02_extrapolation"], empty)
    text = estimate(path, "cpu", ["01_task", "02_extrapolation"], runs)
    assert "with no network to train: not measured" in text and "holds 2 run(s)" in text  # 02's is unknown
    assert "10 s with no network to train, measured" in estimate(path, "cpu", ["01_task"], runs)
    assert "not measured" in estimate(path, "smoke", ["05_formation"], empty)


def test_from_an_empty_runs_folder_the_estimate_is_the_fresh_clone_time_or_a_labelled_lower_bound(tmp_path):
    """A newcomer must never read a cached execution's seconds as the time of a first run."""
    path, empty = tmp_path / TIMINGS_FILE, tmp_path / "runs"
    record_timing(path, "cpu", "05_formation", 5.0, "cached")  # a fresh clone's case: only cached executions known
    text = estimate(path, "cpu", CHAPTERS, empty)
    # the grid of chapters 01-04 at cpu: GRU, LSTM x DeCu, VoCu x 10 networks x the preset's steps on two
    # datasets, on the fast path
    steps = make_config("cpu").steps
    networks, seconds = 2 * 2 * 2 * 10, 2 * 2 * 2 * 10 * steps * CPU_SECONDS_PER_NETWORK_STEP / CPU_FAST_SPEEDUP
    assert "from an empty runs folder: not measured; estimated instead: at least " \
           f"{_minutes(seconds)} to train the {networks} networks" in text
    assert "5 s" not in text
    assert f"the {networks // 4} networks" in estimate(path, "cpu", ["01_task"], empty, {"archs": "gru", "datasets": "mnist-5k"})
    record_fresh_time(path, "cpu", 7200.0)
    assert estimate(path, "cpu", list(reversed(CHAPTERS)), empty).startswith(
        f"Estimate for {len(CHAPTERS)} chapter(s) at cpu: 120.0 min from an empty runs folder, as measured for "
        "`make book` from a fresh clone")
    assert "at least" in estimate(path, "cpu", ["01_task"], empty)  # the fresh time covers every chapter only
    # the grid's runs there: what is left of it is counted; the fresh time no longer applies
    config = make_config("cpu", arch="gru", protocol="decu", dataset="mnist-5k")
    (_runs(empty, store.run_name(config)) / store.run_name(config) / store.SUMMARY_FILE).write_text("{}")
    text = estimate(path, "cpu", CHAPTERS, empty)
    assert "120.0 min" not in text and f"the {networks - 10} networks still missing" in text


@pytest.mark.parametrize("given, recorded", [([], True), (["--chapters", "01_task"], False),
                                             (["--set", "seeds=2"], False)])
def test_book_run_records_the_fresh_time_when_it_executed_every_chapter_from_an_empty_runs_folder(
        tmp_path, monkeypatch, given, recorded):
    from memrnn import book
    from memrnn.cli import main

    monkeypatch.setattr(book, "run", lambda *args: time.sleep(0.2))  # the execution itself is tested above
    monkeypatch.setattr(book, "build", lambda root: tmp_path / "_build" / "html")
    assert main(["book", "run", "--root", str(tmp_path), "--started-at", str(time.time() - 60), *given]) == 0
    timings = json.loads((tmp_path / "book" / TIMINGS_FILE).read_text()) if recorded else {}
    assert recorded == (60 < timings.get("cpu", {}).get(FRESH_KEY, 0) < 120)
    _runs(tmp_path / "runs", "a")
    (tmp_path / "book" / TIMINGS_FILE).unlink(missing_ok=True)
    assert main(["book", "run", "--root", str(tmp_path), *given]) == 0  # a runs folder with a run: not a fresh clone
    assert not (tmp_path / "book" / TIMINGS_FILE).exists()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_book_run_shows_its_training_and_stops_cleanly_when_interrupted(tmp_path, stop):
    """Ctrl-C (SIGINT to the process group) or SIGTERM during a chapter's training: memrnn, its kernel and its
    Dask workers are gone within seconds, with nothing left in the temporary folder and no half-executed
    notebook; before that, the terminal showed the training in flight."""
    import psutil

    root, scratch = tmp_path / "root", tmp_path / "tmp"
    root.mkdir(), scratch.mkdir()
    _book_layout(root)
    log = tmp_path / "log"
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(ROOT)}
    env.pop("MEMRNN_SCHEDULER", None)  # the runner's own local cluster, as `make book` has
    with log.open("w") as out:
        # as a foreground job in a terminal gets it: a suite started in the background (`make test &`) passes on
        # SIGINT ignored, which a child keeps
        child = subprocess.Popen([sys.executable, "-m", "memrnn", "book", "run", "--root", str(root), "--preset",
                                  "smoke", "--chapters", "01_task", "--no-build"], stdout=out, stderr=out, env=env,
                                 start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while " in flight]" not in log.read_text() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert child.poll() is None, log.read_text()
        shown = log.read_text()
        assert re.search(r"training: .*\d+/\d+ \[\d+:\d+<\d+:\d+", shown), shown  # steps done/all [elapsed<ETA]
        kernel = [p for p in psutil.Process(child.pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
        started = time.monotonic()
        os.killpg(child.pid, stop)
        child.wait(timeout=15)
        print(f"stopped in {time.monotonic() - started:.1f} s")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 128 + stop, log.read_text()
    time.sleep(1)  # a process that outlived its parent by a moment
    alive = [p for p in psutil.process_iter(["pid", "status"]) if p.info["status"] != psutil.STATUS_ZOMBIE
             and _session(p.info["pid"]) == child.pid]
    assert not alive and not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in kernel)
    # torch keeps its per-user compile cache there on purpose (torchinductor_<user>), empty here
    assert [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_")] == []
    assert sorted(p.name for p in (root / "book").glob("*.ipynb")) == []
    assert sorted(p.name for p in (root / "book").glob(".*")) == []


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None
