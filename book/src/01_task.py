# %% [markdown]
# # C1 · The task is solved equally well at the trained delays
#
# **Claim (paper):** networks trained with different protocols, datasets and architectures solve the
# delayed classification task equally well on the delays they were trained on.
#
# **The task.** A trial is 20 frames of Gaussian pixel noise with the dataset's pixel statistics. Once,
# at a random time, a clean image is shown; 4 to 19 frames later a separate trigger channel turns on,
# and the network must report the image's class at that step (and "null" at every other step).
# **Protocols:** `decu` lengthens the longest delay during training (delay curriculum), `vocu` adds
# classes one at a time (vocabulary curriculum), `none` trains on everything from the start.
#
# **Measured here:** report accuracy on *held-out* images, averaged over the trained delays 4–19, for
# every network of every condition.
#
# **Runtime.** `smoke`: seconds anywhere (tiny networks, synthetic images: the numbers mean nothing).
# `cpu`: the full grid (GRU, LSTM × 3 protocols × 5 seeds, 3,000 steps, MNIST 5k) trains in about
# 30 minutes on two CPU cores the first time, then comes from the cache. `paper`: the reference
# hyperparameters, for a GPU (Colab); not yet run for this book.

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

# %% [markdown]
# ## One trial, as the network sees it

# %%
import torch

from memrnn.data import load_dataset
from memrnn.task import TaskSpec, TrialSampler

bank = load_dataset(config.dataset)
trial = TrialSampler(bank, TaskSpec()).sample([torch.Generator().manual_seed(3)], 1, 20, 10)
fig = plots.trial_frames(trial.frames[0, 0], trial.trigger[0, 0], int(trial.labels[0, 0]),
                         int(trial.stimulus_time[0, 0]), int(trial.report_time[0, 0]), bank.image_shape)

# %% [markdown]
# ## Accuracy at the trained delays
# One dot per network; bars are condition means. Chance is 1 in 10.

# %%
fig = plots.trained_accuracy(rows)
for row in rows:
    mean, half = plots.mean_ci(row["trained_delay_accuracy"])
    print(f"{plots.condition_label(row):<12} {mean:.3f} ± {half:.3f} (95% CI over {len(row['trained_delay_accuracy'])} networks)")

# %% [markdown]
# ## Verdict
# *Reproduced* if every condition's mean accuracy is at least 0.90 and condition means lie within 0.05
# of each other; *partly* if every mean is at least 0.80; otherwise *not reproduced*.

# %% tags=["nbval-check-output"]
means = np.array([np.mean(r["trained_delay_accuracy"]) for r in rows])
spread = means.max() - means.min()
verdict = ("reproduced" if means.min() >= 0.9 and spread <= 0.05
           else "partly reproduced" if means.min() >= 0.8 else "not reproduced")
statistic = f"lowest condition mean accuracy {means.min():.2f}, spread of means {spread:.2f}"
record_verdict(runs, "C1", verdict, statistic, preset, len(rows) * config.seeds)
print(f"C1: {verdict} ({statistic})")
