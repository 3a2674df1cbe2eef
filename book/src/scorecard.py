# %% [markdown]
# # Scorecard
#
# Every claim of the paper and what we found: the verdict (reproduced, partly reproduced, not
# reproduced: the evidence excludes the effect the rule names, or inconclusive: a premise unmet, or too
# little power) with its reason in view; the statistic, the premises, the smallest effect the test
# could detect and the scope it speaks for folded beneath it. The rules behind the verdicts live in
# `memrnn.claims`, fixed before the data and tested on results where each claim is false. This page
# reads `verdicts.json`, which `memrnn book run` writes from the verdicts that the committed
# executions of the chapters recorded: nothing here is typed by hand.

# %% tags=["remove-cell"]
# On Colab or Binder without the package: install it (this cell is hidden in the book).
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("memrnn") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "memrnn[mnist5k] @ git+https://github.com/memrnn/memrnn"],
                   check=True)

# %% tags=["parameters"]
preset: str = "cpu"                # the preset the chapters ran at
verdicts: str = "verdicts.json"    # the verdicts: a file or its address

# %% tags=["hide-input"]
from IPython.display import HTML, Markdown, display

from memrnn.claims import dataset_name
from memrnn.display import CLAIM_CHAPTERS, box_html, evidence, load_summary
from memrnn.presets import book_datasets, make_config

summary = load_summary(verdicts)


def shape(preset):
    config = make_config(preset)
    return (f"{' and '.join(book_datasets(preset))}, {config.hidden_size} units, batch {config.batch_size}, "
            f"{config.steps:,} training steps, {config.seeds} networks per condition")


if preset != "paper":
    display(Markdown(
        f"```{{warning}}\nThese verdicts come from the `{preset}` preset ({shape(preset)}), not the "
        f"paper's scale ({shape('paper')}). They speak for the reference's model at this scale "
        "only; the `paper` preset reruns every chapter at the reference's.\n```"))

# %% tags=["hide-input"]
cards = []
for claim, chapter in CLAIM_CHAPTERS.items():
    r = summary.get(claim)
    if r is None:
        cards.append(box_html(f"{claim}: not run", "inconclusive", f"The committed {chapter} recorded no verdict."))
        continue
    # per dataset where the verdict was decided per dataset; a verdict recorded before: its overall reason
    by = r.get("by_dataset") or {}
    per = " ".join(f"On {dataset_name(d)}: **{b['verdict']}**." for d, b in by.items())
    why = f"{per} Why: {r['summary']}." if by else f"Why this verdict: {r['reason']}."
    cards.append(box_html(f"{claim} · {r['question']} — {r['verdict']}", r["verdict"], f"The paper: {r['statement']} {why}",
                          {**evidence(r), "Device": r.get("device") or "not recorded"}, link=f"{chapter}.html"))
HTML("".join(cards))

# %% tags=["nbval-check-output", "remove-cell"]
for claim in CLAIM_CHAPTERS:
    print(f"{claim}: {summary[claim]['verdict'] if claim in summary else 'not run'}")
