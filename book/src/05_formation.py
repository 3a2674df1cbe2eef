# %% [markdown]
# # C5 · Watching slow points form during training
#
# **Claim (paper):** tracking slow points through training explains why the protocols differ.
#
# **Measured here.** Every checkpoint of every run is kept. Each final slow point is traced *backwards*
# through them by continuation: the search on checkpoint t starts from the point found on the next
# later checkpoint. Read forward in time, a point *appears* at the first checkpoint from which it is
# followed without a break (at most 10× faster than at the end of training — trained networks' slow
# points are rarely exact fixed points, so the bar is relative; reporting its class; moving less than
# half the distance to the nearest other class's point between checkpoints, the scale that separates
# memories). Two classes whose points coincide and later separate have *split* from one point.
#
# **Runtime:** about 20 seconds per run at `cpu` (12 checkpoints × 5 networks × 10 classes).

# %% tags=["remove-cell"]
# On Colab or Binder without the package: install it (this cell is hidden in the book).
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("memrnn") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "memrnn[mnist5k] @ git+https://github.com/memrnn/memrnn"],
                   check=True)

# %% tags=["parameters"]
preset: str = "cpu"               # smoke | cpu | paper
dataset: str = ""                 # empty: the preset's dataset (smoke: synthetic, cpu: mnist-5k, paper: mnist)
archs: str = "gru,lstm"           # comma-separated: gru, lstm, rnn
protocols: str = "decu,vocu,none"  # comma-separated: decu, vocu, none
seeds: int = 0                    # networks per condition; 0: the preset's
device: str = "auto"              # auto | cpu | cuda
runs: str = "../runs"             # cache of trained runs (Colab: a Drive folder keeps them)

# %%
import numpy as np
from IPython.display import display

from memrnn import plots
from memrnn.book import prepare_runs, record_verdict, run_box, training_note
from memrnn.campaign import run_grid
from memrnn.presets import make_config

overrides = dict(dataset=dataset or None, seeds=seeds or None, device=device)
runs = prepare_runs(runs)
display(training_note(preset, archs, protocols, runs, **overrides))
rows = run_grid(preset, archs.split(","), protocols.split(","), out=runs, **overrides)
config = make_config(preset, **overrides)
plots.book_figures()
run_box(config, archs, protocols, device)

# %%
from memrnn.formation import trace_run

from memrnn.book import markdown_table

traces = {row["run"]: trace_run(f"{runs}/{row['run']}") for row in rows}
formation_rows = []
for row in rows:
    t = traces[row["run"]]
    appear = np.array([[np.nan if s is None else s for s in member] for member in t["appears_at"]], dtype=float)
    median_step = f"{np.nanmedian(appear):.0f}" if np.isfinite(appear).any() else "n/a"
    formation_rows.append((plots.condition_label(row), f"{np.isfinite(appear).mean():.0%}",
                           f"{median_step} of {t['steps'][-1]}", len(t["splits"])))
markdown_table(("condition", "traced to the end", "median appearance step", "splits"), formation_rows)

# %% [markdown]
# ## Speed of each class's point through training
# One network per protocol (seed of the first member); dashed lines are curriculum events (a longer
# maximal delay for `decu`, a new class for `vocu`).

# %% mystnb={"figure": {"caption": "Speed of each class's traced slow point through training, first network of each protocol; each line is labelled with its class at its end; dashed: curriculum events.", "name": "fig-c5-formation"}}
fig = plots.formation({f"{plots.condition_label(row)}, first network": traces[row["run"]]
                       for row in rows if row["arch"] == rows[0]["arch"]}, 0)

# %% [markdown]
# ## Verdict
# Two checks. (a) In `vocu` runs a class's slow point should not appear before the class is introduced:
# the fraction of traced points that appear at or after their class's introduction. (b) Per
# architecture, the protocol with the slowest final points (median speed) should be the protocol with
# the best long-delay accuracy. *Reproduced* if (a) ≥ 80% and (b) holds for every architecture;
# *partly* if one of them holds; otherwise *not reproduced*.

# %% tags=["nbval-check-output"]
consistent, total = 0, 0
for row in rows:
    if row["protocol"] != "vocu":
        continue
    t = traces[row["run"]]
    introduced = {e["value"] - 1: e["step"] for e in t["curriculum_events"] if e["kind"] == "n_classes"}
    for member in t["appears_at"]:
        for k, step in enumerate(member):
            if step is not None and k in introduced:
                total += 1
                consistent += step >= introduced[k]
check_a = total > 0 and consistent / total >= 0.8
long = [j for j, d in enumerate(rows[0]["delays"]) if d >= 100]
check_b = []
for arch in sorted({r["arch"] for r in rows}):
    own = [r for r in rows if r["arch"] == arch]
    if len(own) < 2:
        continue
    slowest = min(own, key=lambda r: np.median(np.asarray(traces[r["run"]]["speed"])[..., -1]))
    best = max(own, key=lambda r: np.asarray(r["overall"])[:, long].mean())
    check_b.append(slowest["protocol"] == best["protocol"])
check_b = bool(check_b) and all(check_b)
verdict = ("reproduced" if check_a and check_b else "partly reproduced" if check_a or check_b
           else "not reproduced")
statistic = (f"(a) {consistent}/{total} vocu points appear after their class is introduced; "
             f"(b) slowest protocol = best-remembering protocol: {check_b}")
record_verdict(runs, "C5", verdict, statistic, preset, len(rows) * config.seeds)
print(f"C5: {verdict} (a: {consistent}/{total}; b: {check_b})")

# %% tags=["remove-cell"]
from memrnn.book import glue

glue("c5_vocu", f"{consistent} of {total}")
glue("c5_order", "holds" if check_b else "does not hold")
glue("c5_verdict", verdict)

# %% [markdown]
# ## What we found
#
# In the `vocu` runs, {glue:md}`c5_vocu` traced slow points appeared at or after their class was
# introduced; the rule "the protocol with the slowest final points remembers best" {glue:md}`c5_order`
# for every architecture. The claim is **{glue:md}`c5_verdict`** here. The paper explains the protocol
# differences by how slow points form during training; {numref}`fig-c5-formation` shows that formation
# for one network per protocol.
