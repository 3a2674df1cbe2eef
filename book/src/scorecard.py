# %% [markdown]
# # Scorecard
#
# Every claim of the paper, the statistic we measured, the preset and number of networks behind it, and
# the verdict. This page is generated from the verdicts the chapters recorded when they ran; nothing
# here is typed by hand.

# %% tags=["remove-cell"]
# On Colab or Binder without the package: install it (this cell is hidden in the book).
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("memrnn") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "memrnn[mnist5k] @ git+https://github.com/memrnn/memrnn"],
                   check=True)

# %% tags=["parameters"]
preset: str = "cpu"     # the preset the chapters ran at
runs: str = "../runs"   # where the chapters recorded their verdicts

# %% tags=["hide-input"]
from IPython.display import Markdown

from memrnn.book import read_verdicts

CLAIMS = {
    "C1": "Protocols, datasets and architectures solve the trained delays equally well",
    "C2": "…but differ a lot in extrapolation to long delays",
    "C3": "Each memory is associated with a slow point",
    "C4": "Slow-point speed predicts extrapolation",
    "C5": "Tracking slow-point formation explains the protocol differences",
    "C6": "Penalising speed at the memories improves their robustness",
}
records = {r["claim"]: r for r in read_verdicts(runs)}
lines = ["| claim | statement | our statistic | preset | networks | verdict |", "|---|---|---|---|---|---|"]
for claim, text in CLAIMS.items():
    r = records.get(claim)
    if r is None:
        lines.append(f"| {claim} | {text} | not run | | | |")
    else:
        lines.append(f"| {claim} | {text} | {r['statistic']} | {r['preset']} | {r['networks']} | **{r['verdict']}** |")
stale = sorted({r["preset"] for r in records.values()} - {preset})
if stale:
    lines.append(f"\nSome verdicts come from another preset ({', '.join(stale)}) than this page's ({preset}).")
Markdown("\n".join(lines))

# %% tags=["nbval-check-output"]
for claim in CLAIMS:
    print(f"{claim}: {records[claim]['verdict'] if claim in records else 'not run'}")
