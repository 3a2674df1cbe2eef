# %% [markdown]
# # Which choices matter?
#
# Every chapter runs the reference's model: the authors' GRU cell (reset gate applied to h before the
# recurrent matrix, one bias per gate), sigmoid outputs read by the softmax, weights N(0, 1)/√fan-in,
# the loss averaged over batch × outputs × frames, the class drawn before the image, and their
# slow-point search, centroids, LSTM speed and fine-tuning. Each of these has an alternative — the
# form PyTorch or a careful re-implementation would pick, or our faster search — and a reader who
# builds on the paper will make some of those choices. This chapter flips **one switch at a time**
# away from the reference and measures what it changes:
#
# - **trained-delay accuracy** and **long-delay accuracy** (delays ≥ 100 frames), per network;
# - the **speed–memory correlation** of C4 (Spearman r of log₁₀ slow-point speed with a class's
#   long-delay accuracy, over (network, class));
# - the **fine-tuning gain** of C6 (long-delay accuracy after `slowpoints` minus after `control`).
#
# One more switch is not a choice of the model but of arithmetic: `fast`, the bf16 fast path (on a
# CPU: bf16 input projections with float32 master weights, a fused recurrence, trials cut at T_max).
# It may stand in for float32 training only if it is *equivalent*: see the last section.
#
# Switches of the trained model train new networks with the same seeds as the reference networks, so
# every network has a reference twin with the same initialisation and data streams: each change is a
# paired difference over networks with a 95% t-interval (for the correlation, a leave-one-network-out
# jackknife of the difference of Fisher z). Switches of the analysis and of fine-tuning reuse the
# reference networks, so their accuracies are unchanged by construction.
#
# **Scope.** One architecture (GRU by default), the DeCu protocol (the `protocols` parameter adds
# others), the preset's networks per protocol; the LSTM speed metric has no effect on a GRU (its state is h alone) and is left out unless
# an LSTM is chosen. A change "matters" when its 95% interval excludes 0; with five networks per
# protocol only large effects can show.
#
# **Scale.** At `cpu` this chapter trains at 3,000 steps and 5 networks per condition
# (`memrnn.presets.CHOICES_SCALE`), a quarter of the main grid's length and half its networks: at the main scale each
# retrained condition would cost eight times as much.
#
# **Runtime:** at `cpu`, 5 switches × 5 GRUs to train and the fast path's float32/fast twins (DeCu and
# VoCu), then slow points and two short fine-tunes per condition, kept in the runs cache. The times the
# book measured are stated below.

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
dataset: str = ""                 # empty: the preset's dataset (smoke: synthetic, cpu: mnist-5k, paper: mnist)
archs: str = "gru"                # the one architecture whose choices are flipped: gru or lstm
protocols: str = "decu"           # comma-separated: decu, vocu, none
seeds: int = 0                    # networks per condition; 0: the preset's
device: str = "auto"              # auto | cpu | cuda
arithmetic: str = ""              # "" (the preset's) | fast (bf16, Philox noise) | float32 (the reference)
runs: str = "../runs"             # cache of trained runs
scheduler: str = ""               # Dask scheduler address, or "sync"; empty: $MEMRNN_SCHEDULER, else a local cluster
fields: str = ""                  # comma-separated switches to flip; empty: all that apply to the architecture
fast_protocols: str = "decu,vocu"  # protocols whose networks test the fast path for equivalence

# %% tags=["hide-input"]
from memrnn.chapter import runtime_note

runtime_note("08_choices", preset)

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from memrnn import ablation, plots
from memrnn.chapter import arithmetic_overrides, markdown_table, prepare_runs, run_box
from memrnn.campaign import DEFAULT_DELAYS
from memrnn.display import finding_box
from memrnn.presets import CHOICES_SCALE, MODEL_FORM, make_config

scale = CHOICES_SCALE.get(preset, {})
overrides = dict(dataset=dataset or None, seeds=seeds or scale.get("seeds"), steps=scale.get("steps"), device=device,
                 **arithmetic_overrides(arithmetic))
runs = prepare_runs(runs)
if "," in archs:
    raise ValueError(f"archs={archs!r}: this chapter flips the choices of one architecture (gru or lstm)")
arch = archs
config = make_config(preset, arch=arch, **overrides)
plots.book_figures()
chosen = fields.split(",") if fields else [f for f in MODEL_FORM if arch == "lstm" or f != "speed_metric"]
flips = ablation.switches(chosen)
settings = [None, *flips]
measured = ablation.measure(preset, arch, protocols.split(","), settings, runs, DEFAULT_DELAYS, scheduler=scheduler,
                            **overrides)
table = [ablation.effect(measured[None], measured[s], s) for s in flips]
display(run_box(config, arch, protocols, device))
Markdown(f"{len(flips)} switches, each trained on the same seeds as the reference model: "
         + ", ".join(f"`{s.label}`" for s in flips) + ".")

# %% [markdown]
# ## Each switch against the reference
# Changes are the switch minus the reference, paired by network, with 95% intervals; **bold** marks an
# interval that excludes 0. "—": the switch does not change the trained networks.

# %% tags=["hide-input"]
def cell(value, digits=3):
    if value is None:
        return "—"
    low, high = value["ci95"]
    text = f"{value['change']:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
    return f"**{text}**" if low > 0 or high < 0 else text


def r(value):
    return "n/a" if value is None or value != value else f"{value:+.2f}"  # NaN: accuracy or speed constant


def correlation_cell(value):
    low, high = value["ci95"]
    if low is None:
        return f"{r(value['first'])} → {r(value['second'])}"
    text = f"{r(value['first'])} → {r(value['second'])} ({value['difference']:+.2f} [{low:+.2f}, {high:+.2f}])"
    return f"**{text}**" if low > 0 or high < 0 else text


reference = measured[None]
display(markdown_table(
    ("switch", "trained-delay acc.", "long-delay acc.", "Spearman r (change)", "fine-tuning gain"),
    [("reference", f"{reference['trained'].mean():.3f}", f"{reference['long'].mean():.3f}", "—",
      f"{reference['gain'].mean():+.3f}")]
    + [(f"`{row['switch']}`", cell(row["trained"]), cell(row["long"]), correlation_cell(row["correlation"]),
        cell(row["gain"])) for row in table],
    caption="Each switch against the reference model, paired by network: change [95% CI] of trained- and "
            "long-delay accuracy, of the speed-memory Spearman r and of the fine-tuning gain; bold: the interval "
            "excludes 0."))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Each switch minus the reference model, paired by network: trained-delay and long-delay accuracy, the speed-memory Spearman correlation and the fine-tuning gain (slowpoints minus control), with 95% intervals; red: the interval excludes 0.", "name": "fig-choices"}}
fig = plots.switch_effects(table)

# %% [markdown]
# ## Which claims depend on which choice
# A claim depends on a switch when the switch moves the quantity its verdict rests on: trained-delay
# accuracy (C1), long-delay accuracy (C2), the speed–memory correlation (C4) and the fine-tuning gain
# (C6).

# %% tags=["hide-input"]
claims_of = {"trained": "C1", "long": "C2", "correlation": "C4", "gain": "C6"}
markdown_table(("switch", "claims whose quantity it moves"),
               [(f"`{row['switch']}`", ", ".join(f"{claims_of[m]} ({m})" for m in ablation.matters(row))
                 or "no measured effect") for row in table],
               caption="Each switch and the claims whose quantity it moved (95% interval excluding 0): trained-delay "
                       "accuracy (C1), long-delay accuracy (C2), the speed–memory correlation (C4), the fine-tuning "
                       "gain (C6).")

# %% tags=["nbval-check-output", "remove-cell"]
for row in table:
    moved = ablation.matters(row)
    print(f"{row['switch']}: " + (", ".join(f"{claims_of[m]} ({m})" for m in moved) if moved else "no measured effect"))

# %% [markdown]
# ## Is the fast path equivalent to float32?
# The same networks trained twice with the same seeds, in float32 and on the fast path, then the
# same analyses. Two one-sided paired t-tests (TOST) per accuracy: the fast path is
# equivalent when the mean change is shown to lie within ±0.03 (p < 0.05), a margin below which no
# verdict of this book moves. The twins here draw the pixel noise of this page's arithmetic (the
# `arithmetic` parameter, the preset's by default); the decision of which path the `cpu` preset trains
# on rests on the larger experiment of the next section.

# %% tags=["hide-input"]
# this page's reference networks and their twins on the other path; the row is the fast path minus float32,
# whichever of the two the page's arithmetic made the reference
fast_switch = ablation.Switch("fast", not config.fast)
fast_measured = ablation.measure(preset, arch, fast_protocols.split(","), [None, fast_switch], runs, DEFAULT_DELAYS,
                                 scheduler=scheduler, **overrides)
float32_twins, fast_twins = ((fast_measured[fast_switch], fast_measured[None]) if config.fast
                             else (fast_measured[None], fast_measured[fast_switch]))
fast_row = ablation.effect(float32_twins, fast_twins, ablation.Switch("fast", True))
p_values = ablation.equivalent(fast_row)
markdown_table(("measure", "change [95% CI]", "TOST p (±0.03)"),
               [(f"{name}-delay accuracy", cell(fast_row[name]), f"{p_values[name]:.3f}") for name in p_values]
               + [("Spearman r", correlation_cell(fast_row["correlation"]), "—"),
                  ("fine-tuning gain", cell(fast_row["gain"]), "—")],
               caption=f'Fast path minus float32, paired by network ({arch.upper()}, protocols {fast_protocols}, '
                       f'{len(fast_measured[None]["units"])} pairs on the same seeds): change of each measure (95% CI) '
                       'and the TOST p-value for equivalence within ±0.03.')

# %% tags=["nbval-check-output", "remove-cell"]
for name, p in p_values.items():
    print(f"{name}-delay accuracy equivalent within ±{ablation.EQUIVALENCE_MARGIN}: {p < 0.05}")

# %% [markdown]
# ### Fifty pairs that differ only in arithmetic
# Ten pairs cannot show equivalence within ±0.03 when their differences scatter widely, and twins
# that draw different pixel noise scatter more than the arithmetic alone would make them. `memrnn
# equivalence` trains 50 pairs of GRUs (DeCu and VoCu, seeds 0–24, chapter 08's `cpu` scale) whose twins
# share weights, trials, images *and* noise (`noise=philox` on both paths), and beside them the first
# 10 pairs with separate noise (float32 drawing torch's). Its result, `book/fast_equivalence.json`, is
# what the `cpu` preset's path rests on: the fast path trains the book only if both accuracies are
# equivalent with shared noise.

# %% tags=["hide-input"]
from memrnn import equivalence
from memrnn.store import read_json

twins = read_json(equivalence.RESULT, dict)
NOISE = {"shared": "shared (Philox on both)", "separate": "separate (torch's vs Philox)"}
display(markdown_table(
    ("noise", "accuracy", "pairs", "mean change [95% CI]", "SD of the differences", "TOST p (±0.03)"),
    [(NOISE[noise], f"{name}-delay", s["n"], f"{s['mean']:+.4f} [{s['low']:+.4f}, {s['high']:+.4f}]",
      f"{s['sd']:.3f}", f"{s['tost_p']:.3f}")
     for noise in ("shared", "separate") for name, s in twins[noise].items()],
    caption=f"Fast path minus float32, paired by network ({twins['arch'].upper()}, {', '.join(twins['protocols'])}; "
            f"{twins['steps']:,} steps; {twins['machine']}): the mean change with its 95% t-interval, the spread of "
            "the paired differences, and the TOST p-value for equivalence within ±0.03."))

# %% [markdown]
# ## What we found

# %% tags=["hide-input"]
moved = {row["switch"]: ablation.matters(row) for row in table}
# quantities, not claim ids: which claim rests on which is the table's; a finding names a claim only with its verdict
QUANTITIES = {"trained": "trained-delay accuracy", "long": "long-delay accuracy",
              "correlation": "the speed–memory correlation", "gain": "the fine-tuning gain"}
finding_box(
    f"With {len(reference['units'])} networks per setting, the switches whose effect on a claim's quantity had a 95% "
    "interval excluding 0 were: "
    + ("; ".join(f"`{k}` ({', '.join(QUANTITIES[m] for m in v)})" for k, v in moved.items() if v) or "none of them")
    + ". No effect could be measured for " + (", ".join(f"`{k}`" for k, v in moved.items() if not v) or "none")
    + " — at this number of networks that rules out only large effects, not small ones. The paper's claims were made "
    "for its own model; where a switch moves a quantity, a re-implementation that makes that choice should not expect "
    "the paper's numbers. The fast path against float32, over "
    + f"{len(fast_measured[None]['units'])} pairs of networks: "
    + "; ".join(f"{name}-delay accuracy "
                + (f"equivalent within ±{ablation.EQUIVALENCE_MARGIN}" if p < 0.05 else "not shown equivalent")
                + f" (TOST p = {p:.2f})" for name, p in p_values.items())
    + f". Over {twins['shared']['trained']['n']} pairs with shared noise: "
    + "; ".join(f"{name}-delay accuracy {s['mean']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}], "
                + ("equivalent" if s["tost_p"] < 0.05 else "not shown equivalent") + f" (TOST p = {s['tost_p']:.2f})"
                for name, s in twins["shared"].items())
    + (", so the `cpu` preset trains on the fast path." if twins["equivalent"]
       else ", so the fast path stays an option, off by default."))
