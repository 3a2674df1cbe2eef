"""The learning curve that fixes the ``cpu`` preset's training length, and the rule that reads it.

The rule was written before any claim was looked at and reads only how held-out accuracy at the
trained delays still changes at the end of training; it never reads a claim's statistic (no
comparison between protocols, no long-delay accuracy, no slow point). Its networks have seeds of
their own (1000 on), so the book's networks play no part in choosing their own length.

A rung of the ladder is one training length L. At each rung, three networks per paper condition
(GRU and LSTM x DeCu and VoCu) are trained on each curve dataset at the ``cpu`` shape, and each
network's held-out accuracy at the trained delays is measured per class at every checkpoint, on the
same test trials each time (10,000, or every test image of a smaller set: mnist-5k has 1,000) (so the gains are paired). A rung passes when, in every condition,
the networks' mean accuracy gained less than ``MEAN_GAIN`` over the last quarter of training
(checkpoint 0.75 L to L) and no class gained ``CLASS_GAIN`` or more (so VoCu's last classes, met at
0.70 L, must have been learned). The chosen length is the smallest passing rung; the rungs are tried
from the shortest and a rung stops at its first failing condition, except the longest, which is
trained in full: if it is reached it is the one chosen, and the book shows its every condition. If no
rung passes, the longest rung is chosen, the largest the two-core book can afford, and the book says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import store
from .evaluate import accuracy_by_delay
from .presets import make_config
from .protocols import PROTOCOL_NAMES
from .runs import load_run, task_spec
from .train import train

LADDER = (3000, 4000, 6000)
DATASETS = ("mnist-5k", "fashion-mnist")
# VoCu first: it meets its last class latest, so a rung that fails usually fails on its first run
CONDITIONS = (("gru", "vocu"), ("lstm", "vocu"), ("gru", "decu"), ("lstm", "decu"))
NETWORKS = 3
FIRST_SEED = 1000
EVAL_TRIALS = 10_000
LAST_QUARTER = 0.75
MEAN_GAIN = 0.01
CLASS_GAIN = 0.03
BOOK = Path(__file__).resolve().parents[1] / "book"
RESULT = BOOK / "learning_curve.json"
TABLE, FIGURE = "_learning_curve.md", "figures/learning_curve.svg"  # under book/, included by its Deviations page

RULE = (f"Three networks per paper condition (GRU, LSTM × DeCu, VoCu; seeds {FIRST_SEED}–{FIRST_SEED + NETWORKS - 1}, "
        f"not the book's) are trained at each length L of {', '.join(f'{L:,}' for L in LADDER)} steps on "
        f"{' and '.join(DATASETS)}. A length passes when, in every condition, the networks' mean held-out "
        f"accuracy at the trained delays gained less than {MEAN_GAIN} over the last quarter of training "
        f"(step 0.75 L to L, the same test trials at both) and no class gained {CLASS_GAIN} or more. The "
        "`cpu` preset trains for the shortest passing length; if none passes, for the longest, which is all "
        "the two-core book can afford. Lengths are tried from the shortest; a length stops at its first "
        "failing condition, except the longest, which is trained in full.")


def curve_config(dataset: str, arch: str, protocol: str, steps: int, preset: str = "cpu", networks: int = NETWORKS):
    return make_config(preset, dataset=dataset, arch=arch, protocol=protocol, steps=steps, seeds=networks,
                       first_seed=FIRST_SEED)


def measure(run_dir: Path) -> dict:
    """Held-out accuracy at the trained delays per network and class at every checkpoint of a run."""
    steps = store.checkpoint_steps(run_dir)
    per_step = []
    for step in steps:
        config, model, bank = load_run(run_dir, step, device="cpu")
        result = accuracy_by_delay(model, bank, task_spec(config).trained_delays, EVAL_TRIALS)
        per_step.append(result.accuracy.mean(1).tolist())  # (networks, classes), averaged over delays
    return {"steps": steps, "accuracy": per_step}


@dataclass(frozen=True)
class Plateau:
    """How a condition's held-out accuracy changed over the last quarter of its training."""

    mean_gain: float
    class_gains: list[float]
    final: float

    @property
    def passed(self) -> bool:
        return self.mean_gain < MEAN_GAIN and max(self.class_gains) < CLASS_GAIN

    def reason(self) -> str:
        worst = int(np.argmax(self.class_gains))
        return (f"mean gain {self.mean_gain:+.3f} (< {MEAN_GAIN} needed), largest class gain "
                f"{self.class_gains[worst]:+.3f} on class {worst} (< {CLASS_GAIN} needed)")


def plateau(measured: dict, total_steps: int) -> Plateau:
    """Gains from the checkpoint at 0.75 L to the last one, networks averaged."""
    at = int(LAST_QUARTER * total_steps)
    if at not in measured["steps"] or measured["steps"][-1] != total_steps:
        raise ValueError(f"the run needs checkpoints at steps {at} and {total_steps}; it has {measured['steps']}")
    accuracy = np.asarray(measured["accuracy"])  # (checkpoints, networks, classes)
    start, end = accuracy[measured["steps"].index(at)].mean(0), accuracy[-1].mean(0)
    return Plateau(float(end.mean() - start.mean()), (end - start).tolist(), float(end.mean()))


def choose(rungs: list[dict], ladder=LADDER) -> tuple[int, str]:
    """The training length the rule picks from judged rungs (each {"steps", "passed"}), with why."""
    judged = {r["steps"]: r["passed"] for r in rungs}
    for steps in ladder:
        if steps not in judged:
            raise ValueError(f"rung {steps} has not been judged; the ladder is tried in order {tuple(ladder)}")
        if judged[steps]:
            return steps, f"{steps:,} steps: the shortest length at which every condition had reached its plateau"
    return ladder[-1], (f"{ladder[-1]:,} steps: no length of the ladder met the rule, so the longest; the verdicts' "
                        "premise checks judge whether the networks solve the trained delays")


def run_curve(out: str | Path = "runs", result: Path = RESULT, progress: bool = True, *, preset: str = "cpu",
              ladder=LADDER, datasets=DATASETS, conditions=CONDITIONS, networks: int = NETWORKS) -> dict:
    """Train and judge the ladder's rungs in order until one passes (a rung but the longest stops at its
    first failing condition); writes the result file and returns it."""
    rungs = []
    per_rung = len(datasets) * len(conditions)
    bar = tqdm(total=len(ladder) * per_rung, desc="learning curve", unit="run", disable=not progress)
    for steps in ladder:
        judged_here = []
        for dataset, (arch, protocol) in ((d, c) for d in datasets for c in conditions):
            run_dir = train(curve_config(dataset, arch, protocol, steps, preset, networks), out, progress=progress)
            measured = measure(run_dir)
            judged = plateau(measured, steps)
            judged_here.append({"dataset": dataset, "arch": arch, "protocol": protocol, "run": run_dir.name,
                                **measured, "mean_gain": judged.mean_gain, "class_gains": judged.class_gains,
                                "final": judged.final, "passed": judged.passed, "reason": judged.reason()})
            bar.update()
            if not judged.passed and steps != ladder[-1]:
                break
        passed = len(judged_here) == per_rung and all(c["passed"] for c in judged_here)
        rungs.append({"steps": steps, "passed": passed, "conditions": judged_here})
        bar.update(per_rung - len(judged_here))
        if passed:
            break
    bar.close()
    chosen, why = choose(rungs, ladder)
    summary = {"rule": RULE, "preset": preset, "ladder": list(ladder), "datasets": list(datasets),
               "conditions": [list(c) for c in conditions],
               "networks": networks, "first_seed": FIRST_SEED, "eval_trials": EVAL_TRIALS,
               "mean_gain": MEAN_GAIN, "class_gain": CLASS_GAIN, "rungs": rungs, "chosen_steps": chosen, "why": why}
    store.write_json(Path(result), summary)
    return summary


def format_curve(summary: dict) -> str:
    """The judged rungs as a plain-text table, then the chosen length."""
    lines = [f"{'steps':>6}  {'condition':<26}{'final':>7}{'mean gain':>11}{'worst class gain':>18}  passed"]
    for rung in summary["rungs"]:
        for c in rung["conditions"]:
            label = f"{c['dataset']} {c['arch'].upper()}·{PROTOCOL_NAMES[c['protocol']]}"
            lines.append(f"{rung['steps']:>6}  {label:<26}{c['final']:>7.3f}{c['mean_gain']:>+11.3f}"
                         f"{max(c['class_gains']):>+18.3f}  {'yes' if c['passed'] else 'no'}")
    return "\n".join(lines + [f"chosen: {summary['why']}"])


def curve_markdown(summary: dict) -> str:
    """The judged rungs as the book's captioned table, then the choice."""
    from .chapter import Table

    rows = []
    for rung in summary["rungs"]:
        for c in rung["conditions"]:
            worst = int(np.argmax(c["class_gains"]))
            rows.append((f"{rung['steps']:,}", f"`{c['dataset']}`", f"{c['arch'].upper()} · {PROTOCOL_NAMES[c['protocol']]}",
                         f"{c['final']:.3f}", f"{c['mean_gain']:+.3f}", f"{c['class_gains'][worst]:+.3f} (class {worst})",
                         "yes" if c["passed"] else "no"))
    table = Table(("steps L", "dataset", "condition", "accuracy at L", "mean gain", "largest class gain", "plateau"), rows,
                  caption=f"The learning-curve runs ({summary['networks']} networks each): held-out accuracy at the "
                          "trained delays at the end of training, and its gain over the last quarter (step 0.75 L to L), "
                          "over the networks' mean and per class.")
    total = len(summary["datasets"]) * len(summary["conditions"])
    judged = "; ".join(f"{r['steps']:,} steps: {len(r['conditions'])} of {total}" for r in summary["rungs"])
    if summary["rungs"][-1]["steps"] == summary["ladder"][-1] and len(summary["rungs"][-1]["conditions"]) < total:
        judged += " (the longest length is not trained in full yet: its figure shows the conditions judged)"
    return ("<!-- written by `memrnn curve` from book/learning_curve.json: do not edit -->\n\n"
            f"```{{admonition}} The rule (memrnn.curve)\n:class: note\n{summary['rule']}\n```\n\n"
            + table._repr_markdown_() + f"\n\nConditions judged per length: {judged}.\n\n"
            f"**Chosen:** {summary['why']}.\n")


def write_page(summary: dict, book_dir: Path = BOOK) -> None:
    """The table and figure the book's Deviations page includes."""
    import matplotlib.pyplot as plt

    from . import plots

    store.atomic_write(Path(book_dir) / TABLE, curve_markdown(summary).encode())
    longest = summary["rungs"][-1]
    fig = plots.learning_curves(longest["conditions"], longest["steps"], LAST_QUARTER)
    (Path(book_dir) / FIGURE).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(book_dir) / FIGURE, format="svg", metadata={"Date": None})
    plt.close(fig)
