# %% [markdown]
# # C3 · Each memory sits at a slow point of the dynamics
#
# **Claim (paper):** each memory is associated with a nearly steady state of the hidden dynamics, a
# *slow point*.
#
# **Measured here.** With the input held at the noise mean and the trigger off, a network is an
# autonomous map s → F(s); its speed at s is √q with q = ‖F(s) − s‖² (the full state; (h, c) for
# LSTM). For every network and class we start at the *class centroid* — the mean state after showing an
# image of that class and 14 noise frames, over trials the network still decodes correctly — and
# minimise q with Levenberg–Marquardt (exact Jacobians; iterates kept in (−1, 1)^H, the only region a
# GRU or LSTM can reach). We then ask: is the point much slower than the centroid, and does a trigger
# at the point still report the class?
#
# **Runtime:** seconds per run at `cpu` once the networks of C1 exist.

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
from memrnn.runs import load_run
from memrnn.slowpoints import analyse_run, load_results, probe_trajectories

found = {row["run"]: analyse_run(f"{runs}/{row['run']}") for row in rows}
speed = np.concatenate([np.asarray(f["speed"]).ravel() for f in found.values()])
at_centroid = np.concatenate([np.asarray(f["speed_at_centroid"]).ravel() for f in found.values()])
own_class = np.concatenate([(np.asarray(f["decoded_class"]) == np.arange(10)).ravel() for f in found.values()])
converged = np.concatenate([np.asarray(f["converged"]).ravel() for f in found.values()])
stable = np.concatenate([np.asarray(f["stable"]).ravel() for f in found.values()])
radius = np.concatenate([np.asarray(f["jacobian_spectral_radius"]).ravel() for f in found.values()])
print(f"{len(speed)} (network, class) slow points")
print(f"median speed: {np.median(at_centroid):.2e} at the centroid -> {np.median(speed):.2e} at the slow point")
print(f"reached q <= {next(iter(found.values()))['tol']:g} (a true fixed point): {converged.mean():.0%}")
print(f"trigger at the point reports the class: {own_class.mean():.0%}")
print(f"linearly stable (all |eigenvalues| < 1): {stable.mean():.0%}; median spectral radius {np.median(radius):.4f}")

# %% [markdown]
# ## Speed at the start and at the slow point

# %%
fig = plots.speed_histogram(at_centroid, speed)

# %% [markdown]
# ## The state space of one network
# Trajectories after an image (one line per trial, coloured by class) on the first two principal
# components, with each class's centroid (dots) and the slow point found from it (crosses).

# %%
first = rows[0]["run"]
_, model, bank = load_run(f"{runs}/{first}", device="cpu")
model = model.member(0)
trajectories, labels = probe_trajectories(model, bank, 200, 30)
results = load_results(f"{runs}/{first}")
fig = plots.state_space(trajectories[0].numpy(), labels[0].numpy(), results["points"][0].numpy(),
                        results["centroids"][0].numpy())
fig.axes[0].set_title(f"{plots.condition_label(rows[0])}, seed {found[first]['member_seeds'][0]}", fontsize=9)

# %% [markdown]
# ## Per condition

# %%
for row in rows:
    f = found[row["run"]]
    own = (np.asarray(f["decoded_class"]) == np.arange(10)).mean()
    print(f"{plots.condition_label(row):<12} median speed {np.median(f['speed']):.1e}  "
          f"reports own class {own:.0%}  stable {np.mean(f['stable']):.0%}")

# %% [markdown]
# ## Slow points or slow valleys?
# Few of these points are exact fixed points. Most sit on the floor of a slow *valley*: q keeps
# shrinking, ever more slowly, as the state drifts along it towards saturation, so where a search
# stops is a choice. Ours stops where Levenberg–Marquardt can no longer halve q within 10 iterations:
# the floor nearest the start (near a true fixed point it converges far faster than that). Here the
# search goes on from those points with a lenient rule (q falling by 0.1% within 20 iterations is
# enough), to show what the points become if one follows the valleys.

# %%
import torch

from memrnn.slowpoints import follow_valleys



def median(values):
    return float(np.median(values.cpu().numpy()))


checkpoints = (25, 50, 100, 200)
curves = {}
for row in rows:
    _, model, bank = load_run(f"{runs}/{row['run']}", device=device)
    results = load_results(f"{runs}/{row['run']}")
    start = results["points"].to(bank.test_images.device)
    classes = torch.arange(start.shape[1], device=start.device)
    walked = follow_valleys(model, bank, start, checkpoints)
    curves[plots.condition_label(row)] = {
        "iterations": [0, *checkpoints],
        "own_class": [float((results["decoded"] == classes.cpu()).float().mean())]
        + [float((w.decoded == classes).float().mean()) for w in walked],
        "speed": [median(results["q"].sqrt())] + [median(w.speed) for w in walked],
        "distance": [0.0] + [median((w.points - start).norm(dim=-1)) for w in walked],
    }
fig = plots.valley_drift(curves)
for label, c in curves.items():
    print(f"{label:<12} reports own class {c['own_class'][0]:.0%} -> {c['own_class'][-1]:.0%} after "
          f"{c['iterations'][-1]} more iterations; median speed {c['speed'][0]:.1e} -> {c['speed'][-1]:.1e}; "
          f"moved {c['distance'][-1]:.2f}")
fewer = sum(c["own_class"][-1] < c["own_class"][0] for c in curves.values())
print(f"following the valleys, fewer points report their own class in {fewer} of {len(curves)} conditions")

# %% [markdown]
# The verdict below uses the points at the valley floor nearest each centroid.

# %% [markdown]
# ## Verdict
# *Reproduced* if at least 90% of slow points report their own class and the median slow point is at
# least 10× slower than the median centroid; *partly* if at least half report their class and the
# points are slower than the centroids; otherwise *not reproduced*.

# %% tags=["nbval-check-output"]
ratio = np.median(speed) / np.median(at_centroid)
verdict = ("reproduced" if own_class.mean() >= 0.9 and ratio <= 0.1
           else "partly reproduced" if own_class.mean() >= 0.5 and ratio < 1 else "not reproduced")
statistic = f"{own_class.mean():.0%} of slow points report their class; median speed {ratio:.1e} x the centroid's"
record_verdict(runs, "C3", verdict, statistic, preset, len(rows) * config.seeds)
print(f"C3: {verdict} ({own_class.mean():.0%} own class; speed ratio {ratio:.0e})")
