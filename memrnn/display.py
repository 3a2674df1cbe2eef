"""What a reader sees of a verdict: boxes coloured by outcome, badges, and the book's summary of verdicts.

Boxes are HTML outputs, so they render the same in the book, in Jupyter and on Colab (where the
book's glue and admonition syntax do not render). The summary (``book/verdicts.json``, with the
paper's statement of each claim) is written by ``memrnn book run`` from the verdicts the chapters
recorded; the scorecard and the landing page read it, so neither needs the chapters' runs beside it.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from . import confine, store

# outcome -> (sphinx-design badge colour, box colour)
OUTCOMES = {"reproduced": ("success", "#1b7a3a"), "partly reproduced": ("warning", "#9a5b00"),
            "not reproduced": ("danger", "#b3261e"), "inconclusive": ("muted", "#5f6368")}
SUMMARY_FILE, RESULTS_FILE = "verdicts.json", "_results.md"
# the landing page's figure: C2's extrapolation curves, taken from the executed chapter
HEADLINE = ("02_extrapolation", "fig-c2-extrapolation", "figures/headline.svg")
CLAIM_CHAPTERS = {"C1": "01_task", "C2": "02_extrapolation", "C3": "03_slowpoints", "C4": "04_speed_predicts_memory",
                  "C5": "05_formation", "C6": "06_regularization"}
RULE_COLOUR = "#2f5b9a"


def _outcome(verdict: str | None):
    if verdict is None:
        return "info", RULE_COLOUR
    if verdict not in OUTCOMES:
        raise ValueError(f"verdict {verdict!r} must be one of {tuple(OUTCOMES)}")
    return OUTCOMES[verdict]


def inline_html(text: str) -> str:
    """The inline Markdown the verdicts use (**bold**, *italic*, `code`) as escaped HTML."""
    text = html.escape(str(text), quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", text)


def box_html(title: str, verdict: str | None, body: str, details: dict | None = None, link: str | None = None) -> str:
    """A box with an edge in the colour of ``verdict`` (None: a rule's colour): ``title`` (a link to
    ``link`` if given) and ``body`` always shown, ``details`` (label -> text) folded under a summary
    line that a reader opens."""
    colour = _outcome(verdict)[1]
    heading = inline_html(title)
    heading = f'<a href="{html.escape(link)}" style="color: inherit">{heading}</a>' if link else heading
    folded = "".join(f"<p><em>{html.escape(k)}:</em> {inline_html(v)}</p>" for k, v in (details or {}).items())
    folded = f"<details><summary>Statistic, premises, power and scope</summary>{folded}</details>" if folded else ""
    return (f'<div class="memrnn-box" style="border-left: 0.4em solid {colour}; padding: 0.4em 0.9em; '
            f'margin: 0.8em 0; background: {colour}12">'
            f'<p style="margin: 0.3em 0"><strong style="color: {colour}">{heading}</strong></p>'
            f'<p style="margin: 0.3em 0">{inline_html(body)}</p>{folded}</div>')


def rule_box(claim: str):
    """The rule a chapter's verdict will follow, shown before anything runs."""
    from IPython.display import HTML

    from .claims import rule_text

    return HTML(box_html(f"Verdict rule ({claim}), fixed before the data", None, rule_text(claim)))


def evidence(record: dict) -> dict:
    """What a verdict rests on, label -> text, from a verdict as recorded (``Verdict.to_dict()``)."""
    from .claims import Scope, premises_markdown, scope_markdown

    from .claims import dataset_name

    return {"Statistic": record["statistic"], "Premises": premises_markdown(record["premises"]),
            # a rule tested at another power says so in its value (C1's equivalence: 90%)
            "Smallest effect detectable at this n": record["detectable"]
            + ("" if "power" in record["detectable"] else " (80% power)"),
            **{f"On {dataset_name(d)}": f"{b['verdict']}: {b['reason']}" for d, b in record.get("by_dataset", {}).items()},
            "Scope": scope_markdown(Scope(**record["scope"]))}


def verdict_box(verdict):
    """A chapter's verdict: outcome and reason in view, the evidence behind it folded."""
    from IPython.display import HTML

    return HTML(box_html(f"{verdict.claim}: {verdict.verdict}", verdict.verdict, f"Why: {verdict.reason}.",
                         evidence(verdict.to_dict())))


def finding_box(text: str, verdict=None):
    """A chapter's "What we found", in its verdict's colour (grey for a chapter without a claim),
    readable wherever the notebook is opened."""
    from IPython.display import HTML

    return HTML(box_html("What we found", verdict.verdict if verdict else "inconclusive", text))


def badge(verdict: str) -> str:
    """The outcome as a coloured sphinx-design badge, for the book's Markdown pages."""
    return f"{{bdg-{_outcome(verdict)[0]}}}`{verdict}`"


def statement(notebook) -> str:
    """The paper's claim as a chapter states it: the text after "**Claim (paper):**" in its first cell."""
    text = " ".join(notebook.cells[0].source.split())
    if "**Claim (paper):**" not in text:
        raise ValueError("the chapter's first cell states no **Claim (paper):**")
    return text.split("**Claim (paper):**")[1].split("**")[0].replace("#", "").strip()


def _question(notebook) -> str:
    """The chapter's title without its claim number: the question the chapter asks."""
    title = notebook.cells[0].source.lstrip("# ").splitlines()[0]
    return title.split("·", 1)[-1].strip()


def write_summary(book_dir: Path, records: list[dict]) -> dict:
    """Merge ``records`` (verdicts as the chapters recorded them) into ``book/verdicts.json``, keeping
    for each claim the verdict that the committed notebook of its chapter produced (its code stamp
    and preset): a fresh record when it matches, else the one already there when that still does.
    Adds each claim's statement and question, and writes the landing page's table to ``book/_results.md``."""
    import nbformat

    book_dir = Path(book_dir)
    keep = ("claim", "verdict", "reason", "summary", "by_dataset", "statistic", "scope", "premises", "detectable",
            "preset", "networks", "device", "chapter", "code_sha256")
    fresh, existing = {r["claim"]: {k: r.get(k) for k in keep} for r in records}, read_summary(book_dir)
    summary = {}
    for claim, chapter in CLAIM_CHAPTERS.items():
        path = book_dir / f"{chapter}.ipynb"
        if not path.exists():
            continue
        notebook = nbformat.read(path, as_version=4)
        stamp = notebook.metadata.get("memrnn", {})
        for entry in (fresh.get(claim), existing.get(claim)):
            if entry and (entry.get("code_sha256"), entry.get("preset")) == (stamp.get("code_sha256"), stamp.get("preset")):
                summary[claim] = {**entry, "statement": statement(notebook), "question": _question(notebook)}
                break
    write_headline(book_dir)
    store.write_json(book_dir / SUMMARY_FILE, summary)
    store.atomic_write(confine.writable(book_dir, RESULTS_FILE), results_markdown(summary).encode())
    return summary


def write_headline(book_dir: Path) -> Path | None:
    """Copy the headline figure (the SVG its figure cell shows) out of its executed chapter; None when
    the chapter or its figure is not there (a test of the committed book checks that it is)."""
    import nbformat

    chapter, name, target = HEADLINE
    path = Path(book_dir) / f"{chapter}.ipynb"
    if not path.exists():
        return None
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name") == name:
            images = [o["data"]["image/svg+xml"] for o in cell.get("outputs", []) if "image/svg+xml" in o.get("data", {})]
            if images:
                store.atomic_write(Path(book_dir) / target, "".join(images[-1]).encode())
                return Path(book_dir) / target
    return None


def results_markdown(summary: dict) -> str:
    """The landing page's answer: a table with per claim its question, the overall badge and a badge per
    dataset (where the verdict was decided per dataset; a verdict recorded before shows its overall badge
    only), then each claim's reason in words, one line each (kept out of the table so it stays legible on a
    narrow screen), with the scale the verdicts speak for stated beside them."""
    from .claims import PAPER_PROTOCOLS, dataset_name

    if not summary:
        return "No chapter has recorded a verdict yet.\n"
    datasets = list(dict.fromkeys(d for r in summary.values() for d in (r.get("by_dataset") or r["scope"].get("datasets", []))))
    lines = ["| claim | overall | " + " | ".join(dataset_name(d) for d in datasets) + " |",
             "|---|---|" + "---|" * len(datasets)]
    reasons = []
    for claim, r in sorted(summary.items()):
        by = r.get("by_dataset") or {}
        cells = [badge(by[d]["verdict"]) if d in by else "—" for d in datasets]
        lines.append(f"| [{claim}]({r['chapter']}.ipynb) {r['question']} | {badge(r['verdict'])} | " + " | ".join(cells) + " |")
        why = r.get("summary") or "recorded before verdicts were decided per dataset: see the chapter"
        reasons.append(f"- **{claim}:** {why}")
    return ("<!-- written by `memrnn book run` from the chapters' verdicts: do not edit -->\n\n"
            + "\n".join(lines) + "\n\n" + _scale(summary, PAPER_PROTOCOLS) + "\n\n**Why, per claim:**\n\n"
            + "\n".join(reasons) + "\n")


def _scale(summary: dict, protocols) -> str:
    """What the verdicts speak for: training steps, networks per condition, datasets, preset."""
    from .claims import dataset_name

    scopes = [r["scope"] for r in summary.values() if r.get("scope")]
    steps = sorted({s["steps"] for s in scopes})
    # a scope recorded before it counted networks per condition: its networks over its conditions
    per = sorted({s.get("per_condition") or s["networks"] // max(1, len(s["datasets"]) * len(s["archs"]) * len(protocols))
                  for s in scopes})
    datasets = list(dict.fromkeys(d for s in scopes for d in s["datasets"]))
    presets = sorted({r["preset"] for r in summary.values()})
    return (f"**Scale:** {' or '.join(f'{s:,}' for s in steps)} training steps; "
            f"{' or '.join(map(str, per))} networks per condition; datasets "
            f"{', '.join(dataset_name(d) for d in datasets)}; preset{'s' * (len(presets) > 1)} "
            + ", ".join(f"`{p}`" for p in presets) + ". A dataset decides when its verdict is not inconclusive; "
            "the overall verdict follows from the datasets' by the rule each chapter states.")


def read_summary(book_dir: Path = Path(".")) -> dict:
    path = Path(book_dir) / SUMMARY_FILE
    return store.read_json(path) if path.exists() else {}


def published_summary() -> str:
    """The address of the summary committed to the repository's main branch."""
    from . import REPOSITORY

    return REPOSITORY.replace("://github.com/", "://raw.githubusercontent.com/") + f"/main/book/{SUMMARY_FILE}"


def load_summary(source: str = SUMMARY_FILE) -> dict:
    """The verdict summary from a file or an address; a file that is not there (a notebook opened
    alone, as on Colab) is fetched from the repository instead, saying so."""
    import json
    import urllib.request

    if not source.startswith(("http://", "https://")):
        if Path(source).exists():
            return store.read_json(Path(source))
        print(f"{source} is not beside this notebook: reading the committed verdicts from {published_summary()}")
        source = published_summary()
    try:
        with urllib.request.urlopen(source, timeout=30) as response:
            summary = json.loads(response.read())
    except (OSError, ValueError) as e:
        raise OSError(f"could not read the verdict summary from {source} ({e}); run `memrnn book run` to write "
                      f"{SUMMARY_FILE}, or pass its address as `verdicts`") from None
    if not isinstance(summary, dict) or not all(isinstance(r, dict) and "verdict" in r for r in summary.values()):
        raise ValueError(f"{source} is not a verdict summary (claim -> record with a verdict)")
    return summary
