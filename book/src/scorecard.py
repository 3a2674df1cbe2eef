# %% [markdown]
# # Scorecard
#
# Every claim of the paper, the statistic we measured, the scope it speaks for (preset, data,
# architectures, units, training steps, model form, networks, slow-point search and its iterations,
# fine-tuning steps and λ) and the verdict: reproduced, partly reproduced, not reproduced (the evidence
# excludes the effect the rule names) or inconclusive (a premise unmet, or too little power), with
# its reason, the premises it needs and the smallest effect it could detect at the n used. The
# rules behind the verdicts live in `memrnn.claims`, fixed before the data and tested on results where
# each claim is false. This page is generated from the verdicts the chapters recorded when they ran;
# nothing here is typed by hand. A verdict that the committed execution of its chapter did not
# produce (other code, parameters or preset) is marked stale.

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
import nbformat
from IPython.display import Markdown

from memrnn.book import read_verdicts, stale_verdicts
from memrnn.claims import premises_markdown
from memrnn.presets import make_config

CHAPTER_OF = {"C1": "01_task", "C2": "02_extrapolation", "C3": "03_slowpoints", "C4": "04_speed_predicts_memory",
              "C5": "05_formation", "C6": "06_regularization"}


def statement(chapter):
    """The claim as the chapter states it (its first cell, after "Claim (paper):")."""
    text = " ".join(nbformat.read(f"{chapter}.ipynb", as_version=4).cells[0].source.split())
    return text.split("**Claim (paper):**")[1].split("**")[0].replace("#", "").strip()


def scope(record):
    s = record.get("scope")
    if not s:
        return f"preset `{record['preset']}`, {record['networks']} networks"
    text = (f"preset `{s['preset']}`; {', '.join(s['datasets'])}; {', '.join(a.upper() for a in s['archs'])}; "
            f"{s['units']} units; {s['steps']:,} steps; {s['model_form']}; {s['networks']} networks")
    text += f"; search: {s['search']}" if s.get("search") else ""
    text += f" ({s['search_iterations']:,} reference-search iterations)" if s.get("search_iterations") else ""
    text += f"; fine-tuning {s['finetune_steps']:,} steps at λ = {s['lam']:g}" if s.get("finetune_steps") else ""
    return text + (f"; on {record['device']}" if record.get("device") else "")


records = {r["claim"]: r for r in read_verdicts(runs)}
stale = stale_verdicts(runs)
lines = ["| claim | statement (the paper's) | our statistic | scope | verdict and why | premises | detectable effect (80% power) |",
         "|---|---|---|---|---|---|---|"]
for claim, chapter in CHAPTER_OF.items():
    r = records.get(claim)
    link = f"[{claim}]({chapter}.ipynb)"
    if r is None:
        lines.append(f"| {link} | {statement(chapter)} | not run | | | | |")
        continue
    flag = f" (stale: {stale[claim]})" if claim in stale else ""
    lines.append(f"| {link} | {statement(chapter)} | {r['statistic']} | {scope(r)} | **{r['verdict']}**{flag}: "
                 f"{r.get('reason', '')} | {premises_markdown(r.get('premises', []))} | {r.get('detectable', '')} |")


def shape(config):
    return (f"{config.dataset}, {config.hidden_size} units, batch {config.batch_size}, {config.steps:,} training steps, "
            f"{config.seeds} networks per ensemble")


banner = "" if preset == "paper" else (
    f"```{{warning}}\nThese verdicts come from the `{preset}` preset ({shape(make_config(preset))}), not the "
    f"paper's scale ({shape(make_config('paper'))}), and from one dataset. They speak for the reference's model "
    "at this scale only; the `paper` preset reruns every chapter at the reference's.\n```\n\n")
Markdown(banner + "\n".join(lines))

# %% tags=["nbval-check-output"]
for claim in CHAPTER_OF:
    print(f"{claim}: {records[claim]['verdict'] if claim in records else 'not run'}"
          + (" (stale)" if claim in stale else ""))
