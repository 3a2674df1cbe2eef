"""The book: every chapter executes at the smoke preset, its verdict cells reproduce under nbval,
the committed chapters match their sources, the HTML builds without warnings, and every page loads
in a headless browser with its figures and working internal links."""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from memrnn.book import CHAPTERS, code_hash, run, source_notebook

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """The whole book executed at the smoke preset, in a copy of the book's layout."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("*.ipynb"))
    run(root, "smoke", parameters={"runs": str(root / "runs")}, progress=False)
    return root


def _code_cells(notebook):
    return [c.source for c in notebook.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def test_every_chapter_executes_and_states_a_verdict(smoke_book):
    for name in CHAPTERS:
        notebook = nbformat.read(smoke_book / "book" / f"{name}.ipynb", as_version=4)
        errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, name
        injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and "hide-input" in injected[0].metadata["tags"], name
        checked = [c for c in notebook.cells if "nbval-check-output" in c.metadata.get("tags", [])]
        assert checked and checked[-1].outputs, name
    verdicts = sorted((smoke_book / "runs" / "verdicts").glob("*.json"))
    assert [p.stem for p in verdicts] == ["C1", "C2", "C3", "C4", "C5", "C6"]


def test_verdict_cells_reproduce_under_nbval(smoke_book):
    notebooks = [str(smoke_book / "book" / f"{name}.ipynb") for name in CHAPTERS]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                             *notebooks], cwd=smoke_book / "book", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize("name", CHAPTERS)
def test_committed_chapter_is_its_source_executed(name):
    committed = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
    stamp = committed.metadata["memrnn"]
    assert stamp["code_sha256"] == code_hash(committed), "the notebook's code was edited after it ran"
    assert _code_cells(committed) == _code_cells(source_notebook(ROOT / "book" / "src" / f"{name}.py")), \
        f"book/src/{name}.py changed since the chapter was executed: rerun `memrnn book run --chapters {name}`"
    assert stamp["preset"] in ("cpu", "paper")


@pytest.fixture(scope="module")
def html(smoke_book):
    subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(smoke_book), "-W", "-q"],
                   check=True, capture_output=True)
    return smoke_book / "_build" / "html"


def test_book_builds_without_warnings(html):
    for name in CHAPTERS:
        assert (html / "book" / f"{name}.html").exists()


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="needs Debian's chromium and chromium-driver (installed by .ci/run)")
def test_every_page_loads_with_figures_and_links(html, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        pages = sorted(html.glob("book/*.html"))
        assert len(pages) == len(CHAPTERS) + 3  # + intro, deviations, references
        for page in pages:
            driver.get(page.as_uri())
            assert driver.execute_script("return document.readyState") == "complete", page.name
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
    finally:
        driver.quit()
