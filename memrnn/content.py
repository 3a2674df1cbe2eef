"""What an executed chapter shows, checked: a page can render and still be empty or wrong.

:func:`check_notebook` lists what a reader would find wrong on one executed chapter: a figure with
an empty panel (its SVG read back: every axes must hold drawn data, not only its frame and ticks), a
table with no row, a Python warning in any output (hidden cells included: a warning there is a
number computed wrongly), a raw print on the page (plumbing, not prose) and a run's hash shown where
a condition's name belongs, and a section that computes a result but shows none. :func:`check_book` adds that every chapter says it ran on the same code.
``memrnn book run`` refuses to keep a chapter with a problem.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

SVG = "{http://www.w3.org/2000/svg}"
# what matplotlib's SVG names a drawn data artist (lines, markers, bars are patches: see _panel_is_empty)
DATA_IDS = re.compile(r"^(line2d|(Path|Poly|Line|FillBetweenPoly)(3D)?Collection|QuadMesh|image|Line3D)", re.I)
# a run's folder name: dataset-arch-protocol-hash (memrnn.store.run_name)
RUN_HASH = re.compile(r"[\w.-]*-(gru|lstm|rnn)-(decu|vocu|none)-[0-9a-f]{8,}\b")
WARNING = re.compile(r"\b\w*Warning\b:")
STAMP = re.compile(r"code: (.+?) ·")
HIDDEN = ("remove-cell", "remove-output")


def _panel_is_empty(axes) -> bool:
    """An axes group of matplotlib's SVG holds, in order: its background patch, what was drawn below
    the axis (bars, images: groups without a data name), its two axis groups, then lines, spines and
    texts. Empty: nothing drawn besides the frame, the axes and texts."""
    children = list(axes)
    ids = [c.get("id", "") for c in children]
    axis = [i for i, name in enumerate(ids) if name.startswith("matplotlib.axis")]
    below_axis = ids[1:axis[0]] if axis else ids[1:]
    return not any(DATA_IDS.match(name) for name in ids) and all(n.startswith("text") for n in below_axis)


def empty_panels(svg: str) -> int:
    """How many of an SVG figure's axes show no data."""
    root = ET.fromstring(svg)
    panels = [g for g in root.iter(f"{SVG}g") if re.fullmatch(r"axes_\d+", g.get("id", ""))]
    return sum(_panel_is_empty(p) for p in panels)


def _table_rows(markdown: str) -> list[int]:
    """Body rows of each ```{table}``` block in a Markdown output."""
    counts = []
    for block in re.findall(r"```\{table\}.*?\n(.*?)```", markdown, re.S):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        counts.append(max(len(rows) - 2, 0))  # header and separator
    return counts


def _visible_text(output) -> str:
    if output.output_type == "stream":
        return output.text
    data = output.get("data", {})
    return " ".join(str(data[k]) for k in ("text/markdown", "text/html", "text/plain") if k in data)


def check_notebook(notebook) -> list[str]:
    """What is wrong with what an executed chapter shows, one line per problem (empty: nothing)."""
    problems = []
    figures = tables = 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        hidden = any(tag in cell.metadata.get("tags", []) for tag in HIDDEN)
        where = f"cell {index}"
        for output in cell.get("outputs", []):
            text = _visible_text(output)
            warning = WARNING.search(text)
            if warning:
                said = text[warning.end():].strip().splitlines()[0][:80]
                problems.append(f"{where}: a Python warning: {warning.group(0)} {said}")
            if hidden:
                continue
            if output.output_type == "stream" and output.name == "stdout":  # the book drops stderr
                problems.append(f"{where}: a raw print on the page: {text.strip()[:80]!r}")
            found = RUN_HASH.search(text)
            if found:
                problems.append(f"{where}: a run's hash where a name belongs: {found.group(0)}")
            data = output.get("data", {})
            if "image/svg+xml" in data:
                figures += 1
                empty = empty_panels(data["image/svg+xml"])
                if empty:
                    problems.append(f"{where}: a figure with {empty} empty panel(s)")
            for rows in _table_rows(data.get("text/markdown", "")):
                tables += 1
                if rows == 0:
                    caption = re.search(r"```\{table\} (.*)", data["text/markdown"]).group(1)
                    problems.append(f"{where}: a table with no row: {caption[:80]!r}")
    return problems + empty_sections(notebook)


def empty_sections(notebook) -> list[str]:
    """Headings whose section computes something (has code) but shows none of it before the next one."""
    empty, heading, computed, shown = [], None, False, False
    for cell in notebook.cells + [None]:
        starts = cell is None or cell.cell_type == "markdown" and cell.source.lstrip().startswith("#")
        if starts:
            if heading and computed and not shown:
                empty.append(f"the section {heading!r} shows nothing it computes")
            if cell is None:
                break
            heading, computed, shown = cell.source.lstrip("# ").splitlines()[0], False, False
        if cell.cell_type == "code":
            computed = True
            hidden = any(tag in cell.metadata.get("tags", []) for tag in HIDDEN)
            shown = shown or not hidden and bool(cell.get("outputs"))
    return empty


def code_stamp(notebook) -> str | None:
    """The code a chapter says it ran on (its "What ran" box), or None if it shows no such box."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            found = STAMP.search(output.get("data", {}).get("text/markdown", ""))
            if found and "What ran" in output.data["text/markdown"]:
                return found.group(1)
    return None


def check_book(book_dir: Path, chapters) -> dict[str, list[str]]:
    """{chapter: problems} over executed chapters, with a problem for each chapter whose code stamp
    differs from the most common one."""
    import nbformat

    notebooks = {name: nbformat.read(Path(book_dir) / f"{name}.ipynb", as_version=4) for name in chapters}
    problems = {name: check_notebook(nb) for name, nb in notebooks.items()}
    stamps = {name: code_stamp(nb) for name, nb in notebooks.items()}
    shown = [s for s in stamps.values() if s]
    if shown:
        common = max(set(shown), key=shown.count)
        for name, stamp in stamps.items():
            if stamp and stamp != common:
                problems[name].append(f"ran on {stamp}, the other chapters on {common}")
    return {name: found for name, found in problems.items() if found}


VERDICT_WORDS = ("partly reproduced", "not reproduced", "inconclusive", "reproduced")
CLAIM_ID = re.compile(r"\bC[1-9]\b")


def verdict_for(summary: dict, claim: str, dataset: str | None = None) -> str | None:
    """A claim's verdict in ``book/verdicts.json``: for ``dataset`` where the summary records verdicts
    per dataset (``by_dataset``: dataset -> verdict, or -> record with a verdict), else overall."""
    record = summary.get(claim)
    if record is None:
        return None
    per_dataset = record.get("by_dataset") or {}
    if dataset in per_dataset:
        found = per_dataset[dataset]
        return found["verdict"] if isinstance(found, dict) else found
    return record["verdict"]


def finding_texts(notebook) -> list[str]:
    """The text of each "What we found" box a chapter shows."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            html = output.get("data", {}).get("text/html", "")
            if "memrnn-box" in html and "What we found" in html:
                texts.append(" ".join(re.sub(r"<[^>]+>", " ", "".join(html)).split()))
    return texts


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;])\s+(?=[A-Z(])", text) if s]


def beyond_verdicts(notebook, summary: dict, claim: str | None = None) -> list[str]:
    """Sentences of a chapter's findings that state a claim beyond its verdict: a sentence that names a
    claim (``C4``; for a claim chapter, ``claim`` in "The claim is …") whose verdict, for each dataset
    the sentence names or else overall, is not "reproduced" must say that verdict."""
    datasets = {d for record in summary.values() for d in (record.get("by_dataset") or {})}
    wrong = []
    for text in finding_texts(notebook):
        for sentence in _sentences(text):
            named = set(CLAIM_ID.findall(sentence))
            if claim and "The claim is" in sentence:
                named.add(claim)
            where = [d for d in datasets if d in sentence] or [None]
            for c in sorted(named):
                for dataset in where:
                    expected = verdict_for(summary, c, dataset)
                    said = re.findall("|".join(VERDICT_WORDS), sentence)
                    if expected is None or expected == "reproduced" and "reproduced" in said or \
                            expected != "reproduced" and expected in said:
                        continue
                    if expected == "reproduced" and not said:
                        continue  # a reproduced claim may be stated as fact
                    scope = f" on {dataset}" if dataset else ""
                    wrong.append(f"{c}{scope} is {expected}, but a finding says: {sentence[:160]!r}")
    return wrong
