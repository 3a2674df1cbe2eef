# %% [markdown]
# # Your own network: where are its fixed points, and how long does it hold a bit?
#
# Every chapter so far analysed networks this package trained on the paper's task. The same questions
# can be asked of any recurrent network written in PyTorch: where are its fixed points, which of them
# are stable, and how long does it keep what it remembers? This chapter trains a plain
# `torch.nn.GRU` on the **3-bit flip-flop** of {cite:t}`sussillo2013` — three input channels receive
# occasional ±1 pulses, and each of three outputs must hold the sign of its channel's last pulse — and
# analyses it with `memrnn.fixedpoints` alone:
#
# ```python
# from memrnn import find_fixed_points, reachable_region, sample_starts, step_function
#
# found = find_fixed_points(step_function(gru), sample_starts(states, 1024), torch.zeros(3),
#                           region=reachable_region(gru))
# points = found[found.converged & found.in_region].unique(distance=1e-2)
# ```
#
# `step_function` makes the one-step map F(h, x) of a single-layer `nn.GRU`, `LSTM` or `RNN` from the
# module's own forward; any other map written in PyTorch serves as well, since the search needs only F
# and its Jacobian, which autograd provides. The starts are states the network visited on its own
# trajectories, the input is held at rest (no pulse), and the search is the Levenberg–Marquardt search
# of the earlier chapters, which keeps its iterates inside (−1, 1)^H, the only region a GRU can visit.
# `EnsembleRNN.from_torch` turns the same module into a network of this package, so the analyses of
# the earlier chapters accept it too.
#
# The answer is known in advance: a network that solves the task holds 2³ = 8 memories, stable fixed
# points near the corners of a cube, with saddle points between them. We then ask how long each
# memory survives when noise is the only input, and whether its speed — the quantity the paper ties to
# memory — tells.
#
# **Runtime:** at `cpu`, training the network (kept in the runs cache), then the analysis. The times
# the book measured are stated below; the page then says how long the network took to be ready here.

# %% tags=["remove-cell"]
# On Colab or Binder without the package: install it (this cell is hidden in the book).
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("memrnn") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "memrnn[mnist5k] @ git+https://github.com/memrnn/memrnn"],
                   check=True)

# %% tags=["parameters"]
preset: str = "cpu"               # smoke | cpu (gpu and paper train the cpu network: it is small)
seed: int = 0                     # seed of the network and its training data
runs: str = "../runs"             # cache of the trained network
starts: int = 2048                # start states for the search, sampled from the network's trajectories
start_noise: float = 0.3          # standard deviation of the noise added to each start state
noise: float = 0.2                # standard deviation of the input noise while the network holds its bits

# %% tags=["hide-input"]
from memrnn.chapter import runtime_note

runtime_note("09_own_network", preset)

# %% tags=["hide-input"]
import datetime
import time

import numpy as np
import torch
from IPython.display import Markdown, display

from memrnn import flipflop, plots
from memrnn.chapter import code_version, device_name, markdown_table, prepare_runs

config = flipflop.make_config(preset, seed=seed)
runs = prepare_runs(runs)
plots.book_figures()
began = time.perf_counter()
net = flipflop.trained(config, runs)
trained_in = time.perf_counter() - began
test_inputs, test_targets = flipflop.trials(config, 256, torch.Generator().manual_seed(seed + 1))
with torch.no_grad():
    outputs, states = net(test_inputs)
accuracy = (outputs.sign() == test_targets).float().mean().item()
facts = [("preset", f"`{preset}`"), ("network", f"`nn.GRU`, {config.hidden_size} units, `nn.Linear` readout"),
         ("training", f"{config.steps:,} steps of Adam (lr {config.lr:g}), batch {config.batch_size}, trials of "
                      f"{config.trial_length} steps, input noise σ = {config.input_noise:g}"),
         ("code", code_version()), ("date", datetime.date.today().isoformat()), ("device", device_name("cpu"))]
display(Markdown("> **What ran.** " + " · ".join(f"{k}: {v}" for k, v in facts)))
Markdown(f"The network was ready in {trained_in:.1f} s (trained here, or read from the runs cache). On 256 "
         f"held-out trials, {accuracy:.1%} of its outputs have the right sign.")

# %% [markdown]
# The same network as one of this package's: `EnsembleRNN.from_torch` copies the weights (torch's GRU
# form, `cell="torch"`), and its outputs on the held-out trials match the module's.

# %% tags=["hide-input"]
from memrnn import EnsembleRNN

copy = EnsembleRNN.from_torch(net.gru, net.readout)
with torch.no_grad():
    copied = copy(test_inputs[None, ..., :-1], test_inputs[None, ..., -1])[0]
Markdown(f"The largest difference between the module's outputs and its `EnsembleRNN` copy's on those trials is "
         f"{(copied - outputs).abs().max():.1e}: float32 rounding.")

# %% [markdown]
# ## Fixed points
# Start states are drawn from the hidden states of the held-out trials, with Gaussian noise of standard
# deviation `start_noise` added (a trajectory passes a saddle in a step or two, so few visited states
# lie near one); the input is held at 0 (no pulse, no noise). A point counts when the search converged
# (q = ‖F(h) − h‖² ≤ 10⁻¹²) inside the region. Points closer than 10⁻² are one point: the slowest
# direction at a stable point decays by well under 1% per step, so points within the tolerance can lie
# 10⁻³ apart along it. A point is stable when every eigenvalue of its Jacobian lies inside the unit
# circle; an unstable one is a saddle with as many unstable directions as eigenvalues outside it.

# %% tags=["hide-input"]
from memrnn import find_fixed_points, reachable_region, sample_starts, step_function

began = time.perf_counter()
initial = sample_starts(states, starts, start_noise, seed)
found = find_fixed_points(step_function(net.gru), initial, torch.zeros(config.bits), region=reachable_region(net.gru))
searched_in = time.perf_counter() - began
points = found[found.converged & found.in_region].unique(distance=1e-2)
stable, saddles = points[points.stable], points[~points.stable]
with torch.no_grad():
    corners = net.readout(stable.points).sign()
unstable_directions = (saddles.eigenvalues.abs() > 1).sum(-1)
display(Markdown(f"{len(found)} searches took {searched_in:.1f} s (median {found.iterations.median().item():.0f} "
                 f"iterations): {int(found.converged.sum())} converged and {int(found.in_region.sum())} ended inside "
                 f"(−1, 1)<sup>H</sup>; the median search moved {found.moved.median():.2f} from its start. Merged "
                 f"(points closer than 10⁻² are one), they are {len(points)} distinct fixed points."))


def summary(name, p):
    if not len(p):
        return name, 0, "—", "—"
    radius = p.eigenvalues.abs().amax(-1)
    return name, len(p), f"{p.speed.max():.1e} at most", f"{radius.min():.4f} – {radius.max():.4f}"


markdown_table(("fixed points", "count", "speed √q", "largest |λ|"),
               [summary("stable", stable), summary("unstable (saddles)", saddles)],
               caption="The flip-flop network's fixed points, counted once each: stable points and saddles, their "
                       "largest speed (state units per step) and the range of their Jacobians' largest eigenvalue modulus.")

# %% tags=["nbval-check-output", "remove-cell"]
patterns = {tuple(c) for c in corners.int().tolist()}
print(f"stable fixed points: {len(stable)}, holding {len(patterns)} of the {2 ** config.bits} bit patterns")
print(f"unstable fixed points: {len(saddles)}, with {sorted(set(unstable_directions.tolist()))} unstable direction(s)")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Hidden-state trajectories of held-out flip-flop trials (grey) and the network's fixed points on the top three principal components of those states (axis labels: share of variance): stable points (blue, labelled with the signs they read out) and saddles (open red).", "name": "fig-own-fixed-points"}}
fig = plots.flipflop_fixed_points(states.numpy(), stable.points.numpy(), saddles.points.numpy(), corners.numpy())

# %% [markdown]
# ## Against FixedPointFinder
# FixedPointFinder {cite:p}`golub2018` is what most researchers use for this. On this network, from the same
# 1,024 starts (sampled as in its own flip-flop example, noise 0.5), with the input at 0, q ≤ 10⁻¹² and its
# example's settings (10,000 iterations at learning rate 1), measured with
# `python benchmarks/fixed_points_vs_fpf.py --fpf <its checkout>` on two CPU cores (medians of 2 alternating
# runs in one execution):
#
# | finder | bit patterns held | time | searches reaching q ≤ 10⁻¹² | ending outside (−1, 1)^H | median q | ending at a stable point | ending at a saddle |
# |---|---|---|---|---|---|---|---|
# | memrnn, Levenberg–Marquardt | 8 of 8 | 0.78 s | 127 | 5 | 4.2 × 10⁻⁵ | 110 | 17 |
# | FixedPointFinder (Adam) | 0 of 8 | 14.4 s | 1 | 1,015 | 7.3 × 10⁻⁶ | 0 | 1 |
#
# This table counts searches, not points: the 110 searches that end at a stable point end at copies of
# a few points (many starts lead to the same one), where the analysis above merges points closer than
# 10⁻² and counts each once (its table of fixed points). FixedPointFinder took 18× longer and left 1,015 of its 1,024 points outside the states a GRU can visit, so
# none of them is a memory of this network; ours keeps every iterate inside (the 5 "outside" are points
# where tanh rounds to 1 in float32) and recovers all eight patterns. From these noisier starts most of our
# searches stop on slow valleys short of q ≤ 10⁻¹²; the analysis above uses starts closer to the
# trajectories (`start_noise`).

# %% [markdown]
# ## How long each memory lasts under noise
# From each stable fixed point, Gaussian noise of standard deviation `noise` is the only input (100
# trials per point, at most 1,000 steps). A memory is lost when the state leaves its basin: every 5
# steps a copy of the state relaxes 30 steps without input, and if any output's sign then differs from
# the point's, its bits are gone. The speed at each point and the modulus of its Jacobian's largest
# eigenvalue (the slowest decay towards the point: a perturbation shrinks by that factor per step) are
# set beside the mean time held.

# %% tags=["hide-input"]
from scipy import stats

MAX_STEPS = 1000
held = flipflop.holding_times(net, stable.points, noise, n_trials=100, max_steps=MAX_STEPS, seed=seed).float()
radius = stable.eigenvalues.abs().amax(-1)
mean_held = held.mean(1)
order = torch.argsort(mean_held)
markdown_table(("bits", "speed √q", "largest |λ|", "mean steps held", "trials never lost"),
               [("".join("+" if b > 0 else "−" for b in corners[k]), f"{stable.speed[k]:.1e}", f"{radius[k]:.4f}",
                 f"{mean_held[k]:.0f}", f"{(held[k] == MAX_STEPS).float().mean():.0%}") for k in order.tolist()],
               caption=f"Each stable point (the bits it reads out): speed, largest eigenvalue modulus, mean steps it holds "
                       f"its bits under input noise σ = {noise:g} ({MAX_STEPS:,} at most) and the share of trials never lost.")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Each stable fixed point of the flip-flop network: mean number of steps it holds its bits with noise as the only input, against its speed (left) and against the largest eigenvalue modulus of its Jacobian (right).", "name": "fig-own-holding"}}
fig = plots.holding_vs_speed(stable.speed.numpy(), radius.numpy(), mean_held.numpy(), noise)

# %% [markdown]
# ## What we found

# %% tags=["hide-input"]
from memrnn.display import finding_box, load_summary

# the verdicts the book's claim chapters recorded (this page names them, it does not restate the claims)
verdicts = {claim: record["verdict"] for claim, record in load_summary().items()}


def rank_correlation(x):
    if len(mean_held) < 3:
        return "not measurable (fewer than 3 stable points)"
    r, p = stats.spearmanr(x, mean_held)
    return f"Spearman r = {r:+.2f} (p = {p:.2f}, n = {len(mean_held)})"


finding_box(
    f"The search found {len(stable)} stable fixed points holding {len(patterns)} of the {2 ** config.bits} bit "
    f"patterns and {len(saddles)} saddles, from {len(found)} starts in {searched_in:.1f} s. The stable points are "
    "true fixed points, not merely slow ones: the fastest moves by "
    + (f"{stable.speed.max():.0e}" if len(stable) else "—")
    + " per step, within the search's tolerance (√q ≤ 10⁻⁶), so speed has nothing left to rank them by. Their mean "
    "holding times under noise ranged "
    + (f"from {mean_held.min():.0f} to {mean_held.max():.0f} steps" if len(stable) else "—")
    + f"; against speed, {rank_correlation(stable.speed)}; against the largest eigenvalue modulus, "
    f"{rank_correlation(radius)}. The paper reports that its networks keep memories at slow points that are *not* "
    "fixed, and that there speed predicts how long a memory lasts; this book tests those claims as C3 (verdict: "
    f"{verdicts.get('C3', 'not run')}) and C4 (verdict: {verdicts.get('C4', 'not run')}). Where a network has true "
    "fixed points, as this one, its memories last until noise carries the state out of the basin, which speed does "
    "not measure.")
