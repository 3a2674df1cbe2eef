# %% [markdown]
# # C4 · Slow-point speed predicts how long a memory lasts
#
# **Claim (paper):** across datasets, protocols and architectures, the speed at a memory's slow point
# predicts how well the network extrapolates to long delays.
#
# **Measured here:** one observation per (network, class): log₁₀ of the slow-point speed (chapter C3)
# and that class's long-delay accuracy (mean over evaluated delays ≥ 100 frames, chapter C2). We report
# Spearman's and Pearson's correlation, pooled and per condition. Classes of one network are not
# independent observations, so the 95% confidence intervals come from a bootstrap over *networks*.
#
# **Runtime:** seconds once C1–C3 have run.

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
runs: str = "../runs"             # cache of trained runs

# %%
import numpy as np

from memrnn import plots
from memrnn.book import record_verdict
from memrnn.campaign import run_grid
from memrnn.presets import make_config

overrides = dict(dataset=dataset or None, seeds=seeds or None, device=device)
rows = run_grid(preset, archs.split(","), protocols.split(","), out=runs, progress=False, **overrides)
config = make_config(preset, **overrides)
print(f"{len(rows)} conditions x {config.seeds} networks, dataset {config.dataset}, {config.steps} training steps")

# %%
from memrnn.slowpoints import analyse_run
from memrnn.stats import correlation_table, format_correlations, speed_memory_rows

run_dirs = [f"{runs}/{row['run']}" for row in rows]
for run_dir in run_dirs:
    analyse_run(run_dir)
observations = speed_memory_rows(run_dirs, min_delay=100)
table = correlation_table(observations)
print(format_correlations(table))

# %%
fig = plots.speed_vs_memory(observations)

# %% [markdown]
# ## Verdict
# The paper predicts a negative relation (slower points, longer memories). *Reproduced* if the pooled
# Spearman correlation is at most −0.3 with its 95% CI below zero; *partly* if the CI is below zero but
# the correlation weaker, or if at least half of the conditions show a CI below zero; otherwise *not
# reproduced*.

# %% tags=["nbval-check-output"]
pooled = table[0]["spearman"]
per_condition = [t["spearman"] for t in table[1:]]
negative = [s["ci95"][1] is not None and s["ci95"][1] < 0 for s in per_condition]
if pooled["r"] is not None and pooled["ci95"][1] is not None and pooled["ci95"][1] < 0:
    verdict = "reproduced" if pooled["r"] <= -0.3 else "partly reproduced"
else:
    verdict = "partly reproduced" if negative and np.mean(negative) >= 0.5 else "not reproduced"
r_text = "n/a" if pooled["r"] is None else f"{pooled['r']:+.2f}"
ci_text = "n/a" if pooled["ci95"][0] is None else f"[{pooled['ci95'][0]:+.2f}, {pooled['ci95'][1]:+.2f}]"
statistic = f"pooled Spearman r = {r_text}, 95% CI {ci_text} over {table[0]['networks']} networks"
record_verdict(runs, "C4", verdict, statistic, preset, table[0]["networks"])
print(f"C4: {verdict} (pooled Spearman {r_text})")
