# %% [markdown]
# # C4 · Does slow-point speed predict how long a memory lasts?
#
# **Claim (paper):** across datasets, protocols and architectures, the speed at a memory's slow point
# predicts how well the network extrapolates to long delays. (Tested here within each dataset and
# architecture: GRU and LSTM speeds live in different state spaces.)
#
# **Measured here:** one observation per (network, class): log₁₀ of the speed at the slow point our
# search finds (Levenberg–Marquardt, chapter C3, which leaves no point on the clip boundary) and that
# class's long-delay accuracy (mean over evaluated delays ≥ 100 frames, chapter C2). The verdict reads
# the correlation inside each network, over its classes, with networks as the unit. Reported beside and
# deciding nothing: the reference search's points, correlated over the (network, class) observations of
# a condition, whose 95% intervals treat networks as the unit by a leave-one-network-out jackknife on
# Fisher's z. Networks of the paper's protocols only: those without a curriculum never learned the task
# here (C1).
#
# **Runtime:** the networks of C1 and the slow points of C3, read from the runs cache once C1–C3 have
# run (computed here otherwise), then correlated. The times the book measured are stated below.

# %% tags=["remove-cell"]
# On Colab or Binder without the package: install it (this cell is hidden in the book).
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("memrnn") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "memrnn[mnist5k] @ git+https://github.com/memrnn/memrnn"],
                   check=True)

# %% tags=["parameters"]
preset: str = "cpu"               # smoke | cpu | gpu | paper
datasets: str = ""                # comma-separated; empty: the preset's (smoke: synthetic, cpu: mnist-5k,fashion-mnist)
archs: str = "gru,lstm"           # comma-separated: gru, lstm, rnn
protocols: str = "decu,vocu"      # comma-separated: decu, vocu, none
seeds: int = 0                    # networks per condition; 0: the preset's
device: str = "auto"              # auto | cpu | cuda
arithmetic: str = ""              # "" (the preset's) | fast (bf16, Philox noise) | float32 (the reference)
runs: str = "../runs"             # cache of trained runs (Colab: a Drive folder keeps them)
scheduler: str = ""               # Dask scheduler address, or "sync"; empty: $MEMRNN_SCHEDULER, else a local cluster

# %% tags=["hide-input"]
from memrnn import claims, evidence
from memrnn.display import finding_box, rule_box, verdict_box

rule_box("C4")

# %% tags=["hide-input"]
from memrnn.chapter import runtime_note

runtime_note("04_speed_predicts_memory", preset)

# %% tags=["hide-input"]
import numpy as np
from IPython.display import display

from memrnn import plots
from memrnn.chapter import arithmetic_overrides, prepare_runs, record_verdict, run_box, training_note
from memrnn.campaign import run_grid
from memrnn.presets import book_datasets, make_config

names = book_datasets(preset, datasets)
overrides = dict(seeds=seeds or None, device=device, **arithmetic_overrides(arithmetic))
runs = prepare_runs(runs)
display(training_note(preset, archs, protocols, runs, datasets=names, **overrides))
rows = run_grid(preset, archs.split(","), protocols.split(","), out=runs, datasets=names, **overrides, scheduler=scheduler)
config = make_config(preset, dataset=names[0], **overrides)
plots.book_figures()
run_box(config, archs, protocols, device, datasets=names)

# %% tags=["hide-input"]
from memrnn.chapter import markdown_table
from memrnn.campaign import each_run
from memrnn.slowpoints import analyse_run, analysis_name
from memrnn.stats import correlation_table, speed_memory_rows
from memrnn.store import read_config

# the paper's protocols: networks that never learned the task (see C1) have no memories to correlate
paper = evidence.paper_rows(rows)
run_dirs = [f"{runs}/{row['run']}" for row in paper]
# the verdict reads our search's points (Levenberg-Marquardt leaves none on the clip boundary); the
# reference search's are reported beside, as a finding about the reference method
each_run(analyse_run, run_dirs, scheduler=scheduler)
each_run(analyse_run, run_dirs, search="lm", scheduler=scheduler)
reference_points = speed_memory_rows(run_dirs, min_delay=100)
ours = [o for d in run_dirs for o in speed_memory_rows(
    [d], min_delay=100, section=analysis_name(read_config(d), "lm", config.centroids, config.speed_metric))]
table = correlation_table(reference_points)


def r_ci(s):
    return "n/a" if s["r"] is None else (f"{s['r']:+.2f}" + ("" if s["ci95"][0] is None
                                                           else f" [{s['ci95'][0]:+.2f}, {s['ci95'][1]:+.2f}]"))


def condition_name(key):
    if key == "pooled":
        return "pooled"
    dataset, arch, protocol = key.split("/")
    return plots.full_label({"dataset": dataset, "arch": arch, "protocol": protocol})


markdown_table(("condition", "n", "networks", "Spearman [95% CI]", "Pearson [95% CI]"),
               [(condition_name(t["condition"]), t["n"], t["networks"], r_ci(t["spearman"]), r_ci(t["pearson"]))
                for t in table],
               caption="The reference search's points, reported beside the verdict and deciding nothing: the correlation of log₁₀ slow-point speed with the class's long-delay accuracy pooled over the networks of each condition (n: network × class observations; within and between networks mixed), 95% intervals from a network jackknife.")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "One dot per network and class: log₁₀ speed of our search's slow point (the points the verdict reads) against that class's long-delay accuracy (delays ≥ 100), coloured by condition; dotted: chance.", "name": "fig-c4-scatter"}}
fig = plots.speed_vs_memory(ours)

# %% [markdown]
# ## Verdict
# The rule shown at the top of this chapter (fixed in `memrnn.claims` before any network was trained),
# applied to this run; the statistic behind the verdict and the scope it speaks for follow. The verdict
# judges the paper's protocols (DeCu and VoCu).

# %% tags=["nbval-check-output", "remove-cell"]
verdict = claims.c4_speed_predicts_memory(ours, evidence.trained_accuracy(paper),
                                          evidence.scope(config, paper, "Levenberg-Marquardt"))
record_verdict(runs, verdict)
print(f"C4: {verdict.verdict}")

# %% tags=["hide-input"]
verdict_box(verdict)

# %% [markdown]
# ## The correlations the verdict reads
# Inside each network (one observation per class), the median network per condition with its 95%
# interval; beside it, the association between networks and the correlation pooled over protocols,
# which decide nothing.

# %% tags=["hide-input"]
rows_c4 = []
for key, d in verdict.details.items():
    if key in ("pooled", "tests"):
        continue
    dataset, arch = key.split("/")
    for protocol, c in d["conditions"].items():
        rows_c4.append((condition_name(f"{key}/{protocol}"), "inside each network (median network)",
                        r_ci(c), c["networks"]))
        rows_c4.append((condition_name(f"{key}/{protocol}"), "between networks (decides nothing)",
                        r_ci(c["between_networks"]), c["networks"]))
    rows_c4.append((f"{claims.dataset_name(dataset)} · {arch.upper()}, pooled over protocols", "decides nothing", r_ci(d["pooled_over_protocols"]), "—"))
markdown_table(("correlation", "how", "Spearman r [95% CI]", "networks"), rows_c4,
               caption="The correlations behind C4's verdict (our search's points): inside each network, the median network per condition (the verdict reads these rows); between networks and pooled over protocols (reported, deciding nothing).")

# %% [markdown]
# ## What we found

# %% tags=["hide-input"]
within = {k: v for k, v in verdict.details.items() if k not in ("pooled", "tests")}
finding_box(
    f"Over {table[0]['networks']} networks, the Spearman correlation between log slow-point speed and long-delay "
    "accuracy over the classes inside each network (our search's points), median network per condition, was "
    + "; ".join(f"{condition_name(k + '/' + p)} {r_ci(c)}" for k, v in within.items() for p, c in v["conditions"].items())
    + " (95% intervals over networks). Pooled over the protocols, which mixes the association inside conditions with "
    "any between them, it was "
    + "; ".join(f"{claims.dataset_name(k.split('/')[0])} · {k.split('/')[1].upper()} {r_ci(v['pooled_over_protocols'])}"
                for k, v in within.items())
    + "; that figure decides nothing, since a difference between protocols in both speed and memory is not speed "
    f"predicting memory. Pooled over architectures it was {r_ci(verdict.details['pooled'])}, a figure that mixes the "
    f"two architectures' different state spaces and decides nothing. The claim is **{verdict.verdict}** here: "
    f"{verdict.reason}. The paper reports that slower points go with longer memories across datasets, protocols and "
    "architectures, i.e. a negative correlation.", verdict)
