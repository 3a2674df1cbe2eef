# %% [markdown]
# # Beyond the paper
#
# Three questions the paper leaves open, answered with the same machinery:
#
# 1. **Vanilla tanh RNNs.** Do networks without gates keep memories at slow points too, and does speed
#    predict their memory?
# 2. **How strong should the penalty be?** A sweep of λ for the `slowpoints` fine-tuning of C6, with
#    both long-delay and trained-delay accuracy (a regulariser that buys memory by failing the task is
#    no win).
# 3. **Moving anchors.** The reference keeps the anchors fixed while the weights move; here the slow
#    points are re-found five times during fine-tuning.
#
# **Runtime:** at `cpu` about 15 minutes (one more grid condition, five fine-tunings).

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
archs: str = "gru"                # networks whose fine-tuning is swept
protocols: str = "decu"           # protocol of the networks fine-tuned
seeds: int = 0                    # networks per condition; 0: the preset's
device: str = "auto"              # auto | cpu | cuda
runs: str = "../runs"             # cache of trained runs
lams: str = "1e-4,1e-3,1e-2,1e-1"  # penalty strengths of the sweep

# %%
import numpy as np

from memrnn import plots
from memrnn.campaign import run_grid
from memrnn.presets import make_config

overrides = dict(dataset=dataset or None, seeds=seeds or None, device=device)
rows = run_grid(preset, archs.split(","), protocols.split(","), out=runs, progress=False, **overrides)
config = make_config(preset, **overrides)
print(f"{len(rows)} conditions x {config.seeds} networks, dataset {config.dataset}, {config.steps} training steps")

# %% [markdown]
# ## 1 · Vanilla RNNs

# %%
from memrnn.evaluate import evaluate_run
from memrnn.regularize import DEFAULT_STEPS, compare, finetune
from memrnn.slowpoints import analyse_run
from memrnn.stats import correlation_table, format_correlations, speed_memory_rows

vanilla = run_grid(preset, ["rnn"], ["none"], out=runs, progress=False, **overrides)
fig = plots.extrapolation(vanilla + [r for r in rows if r["protocol"] == protocols.split(",")[0]])
vanilla_dir = f"{runs}/{vanilla[0]['run']}"
found = analyse_run(vanilla_dir)
mean, half = plots.mean_ci(vanilla[0]["trained_delay_accuracy"])
print(f"vanilla RNN: trained-delay accuracy {mean:.3f} ± {half:.3f}")
print(f"slow points reporting their class: {(np.asarray(found['decoded_class']) == np.arange(10)).mean():.0%}, "
      f"median speed {np.median(found['speed']):.1e}")
print(format_correlations(correlation_table(speed_memory_rows([vanilla_dir]))))

# %% [markdown]
# ## 2 · Penalty strength

# %%
parent_row = rows[0]
parent = f"{runs}/{parent_row['run']}"
evaluate_run(parent, parent_row["delays"])
control = finetune(parent, "control", progress=False)
sweep = [finetune(parent, "slowpoints", float(lam), progress=False) for lam in lams.split(",")]
for child in [control, *sweep]:
    evaluate_run(child, parent_row["delays"])
table = compare(parent, [control, *sweep])
fig = plots.lambda_sweep(table)
for r in table:
    print(f"λ = {r['lam']:<7g} long-delay {r['long']['after']:.3f}  trained-delay {r['trained']['after']:.3f}")

# %% [markdown]
# ## 3 · Fixed versus re-found anchors

# %%
steps = DEFAULT_STEPS.get(preset, 500)
fixed = finetune(parent, "slowpoints", progress=False)
moving = finetune(parent, "slowpoints", relocate=max(1, steps // 5), progress=False)
for child in (fixed, moving):
    evaluate_run(child, parent_row["delays"])
for r in compare(parent, [control, fixed, moving]):
    vs = r["long"].get("vs_control", {"change": 0.0, "ci95": [0.0, 0.0]})
    name = "control" if r["mode"] == "control" else f"slowpoints, anchors {'re-found every ' + str(r['relocate']) + ' steps' if r['relocate'] else 'fixed'}"
    print(f"{name:<44} long-delay {r['long']['after']:.3f} (vs control {vs['change']:+.3f} "
          f"[{vs['ci95'][0]:+.3f}, {vs['ci95'][1]:+.3f}]), trained-delay {r['trained']['after']:.3f}")

# %% [markdown]
# ## In short

# %% tags=["nbval-check-output"]
own_class = (np.asarray(found["decoded_class"]) == np.arange(10)).mean()
best = max(table[1:], key=lambda r: r["long"]["after"])
kept = best["trained"]["after"] >= table[0]["trained"]["after"] - 0.02
solved = np.mean(vanilla[0]["trained_delay_accuracy"]) >= 0.9
print(f"vanilla RNNs solve the trained delays (mean accuracy >= 0.9): {solved}; "
      f"their slow points reporting their class: {own_class:.0%}")
print(f"best λ for long delays: {best['lam']:g} (long-delay {best['long']['after']:.2f} vs control "
      f"{table[0]['long']['after']:.2f}; trained-delay accuracy kept: {kept})")
