"""The learning curve that fixes the ``cpu`` preset's training length, and the rule that reads it.

The rule was written before any claim was looked at and reads only held-out accuracy at the trained
delays; it never reads a claim's statistic (no comparison between protocols, no long-delay accuracy,
no slow point). Its networks have seeds of their own (1000 on), so the book's networks play no part
in choosing their own length.

A rung of the ladder is one training length L. At each rung, three networks per paper condition
(GRU and LSTM x DeCu and VoCu) are trained on each curve dataset at the ``cpu`` shape, and each
network's held-out accuracy at the trained delays is measured per class on the same test trials at
every rung. A condition has reached its plateau at L when training it to the next rung gains it less
than ``MEAN_GAIN`` in mean accuracy and less than ``CLASS_GAIN`` on every class: the comparison is
between lengths because the schedules are fractions of L (VoCu's last class enters at 0.70 L, the
learning rate drops at 0.857 L), so any window inside one run measures the schedule's own last
events, not unfinished training. The chosen length is the shortest affordable rung at which every
condition has reached its plateau, else the longest affordable one; each condition's plateau at the
chosen length is recorded, and the verdicts read it as a premise. The ladder's last rung is trained
only to judge the one before it.

The first rule (kept in ``FIRST_RULE``, the one the committed result was judged by) measured the
gain within each run over its last quarter; the book shows that measure beside the new one.
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

LADDER = (6000, 9000, 12000, 16000)
# the longest length a fresh `make book` can train within BUDGET_MINUTES on two cores; the last rung
# above it is trained only to judge it
AFFORDABLE = 12000
BUDGET_MINUTES = 150
DATASETS = ("mnist-5k", "fashion-mnist")
CONDITIONS = (("gru", "vocu"), ("lstm", "vocu"), ("gru", "decu"), ("lstm", "decu"))
NETWORKS = 3
FIRST_SEED = 1000
EVAL_TRIALS = 10_000
LAST_QUARTER = 0.75  # the first rule's window, still shown beside the new measure
MEAN_GAIN = 0.01
CLASS_GAIN = 0.05  # between two independently trained lengths a class's mean over 3 networks moves ~0.02 by chance
BOOK = Path(__file__).resolve().parents[1] / "book"
RESULT = BOOK / "learning_curve.json"
TABLE, FIGURE = "_learning_curve.md", "figures/learning_curve.svg"  # under book/, included by its Deviations page


def _lengths(ladder) -> str:
    return ", ".join(f"{L:,}" for L in ladder)


RULE = (f"Three networks per paper condition (GRU, LSTM × DeCu, VoCu; seeds {FIRST_SEED}–{FIRST_SEED + NETWORKS - 1}, "
        f"not the book's) are trained at each length L of {_lengths(LADDER)} steps on {' and '.join(DATASETS)}. "
        f"A condition has reached its plateau at L when training it to the next length gains its networks' mean "
        f"held-out accuracy at the trained delays less than {MEAN_GAIN} and every class less than {CLASS_GAIN} "
        "(the same test trials at both lengths). The `cpu` preset trains for the shortest length at which every "
        f"condition has reached its plateau, among the lengths a fresh book can afford ({BUDGET_MINUTES} minutes "
        f"on two cores: up to {AFFORDABLE:,} steps); if none passes, for {AFFORDABLE:,}, and the verdicts read "
        "each condition's plateau as a premise. Lengths are trained from the shortest; the ladder stops once a "
        f"length passes; {LADDER[-1]:,} steps are trained only to judge {AFFORDABLE:,}.")
FIRST_RULE = ("Three networks per paper condition (GRU, LSTM × DeCu, VoCu; seeds 1000–1002, not the book's) are "
              "trained at each length L of 3,000, 4,000, 6,000 steps on mnist-5k and fashion-mnist. A length passes "
              "when, in every condition, the networks' mean held-out accuracy at the trained delays gained less than "
              "0.01 over the last quarter of training (step 0.75 L to L, the same test trials at both) and no class "
              "gained 0.03 or more. The `cpu` preset trains for the shortest passing length; if none passes, for the "
              "longest, which is all the two-core book can afford. Lengths are tried from the shortest; a length "
              "stops at its first failing condition, except the longest, which is trained in full.")


def curve_config(dataset: str, arch: str, protocol: str, steps: int, preset: str = "cpu", networks: int = NETWORKS):
    return make_config(preset, dataset=dataset, arch=arch, protocol=protocol, steps=steps, seeds=networks,
                       first_seed=FIRST_SEED)


def measure(run_dir: Path) -> dict:
    """Held-out accuracy at the trained delays per network and class at the two checkpoints the rules
    read: 0.75 L (the first rule's window) and L, evaluated on the path the run was trained on."""
    saved = store.checkpoint_steps(run_dir)
    steps = [step for step in saved if step in (int(LAST_QUARTER * saved[-1]), saved[-1])] if saved else []
    per_step = []
    for step in steps:
        config, model, bank = load_run(run_dir, step, device="cpu")
        result = accuracy_by_delay(model, bank, task_spec(config).trained_delays, EVAL_TRIALS, fast=config.fast)
        per_step.append(result.accuracy.mean(1).tolist())  # (networks, classes), averaged over delays
    return {"steps": steps, "accuracy": per_step}


def last_quarter_gain(measured: dict, total_steps: int) -> tuple[float, list[float]]:
    """The first rule's measure: gains from the checkpoint at 0.75 L to the last one, networks averaged
    (mean, per class). Shown beside the between-length gain; it no longer decides."""
    at = int(LAST_QUARTER * total_steps)
    if at not in measured["steps"] or measured["steps"][-1] != total_steps:
        raise ValueError(f"the run needs checkpoints at steps {at} and {total_steps}; it has {measured['steps']}")
    accuracy = np.asarray(measured["accuracy"])  # (checkpoints, networks, classes)
    start, end = accuracy[measured["steps"].index(at)].mean(0), accuracy[-1].mean(0)
    return float(end.mean() - start.mean()), (end - start).tolist()


@dataclass(frozen=True)
class Plateau:
    """What training a condition to the next length gained it (networks averaged)."""

    mean_gain: float
    class_gains: list[float]

    @property
    def passed(self) -> bool:
        return self.mean_gain < MEAN_GAIN and max(self.class_gains) < CLASS_GAIN

    def reason(self) -> str:
        worst = int(np.argmax(self.class_gains))
        return (f"mean gain to the next length {self.mean_gain:+.3f} (< {MEAN_GAIN} needed), largest class gain "
                f"{self.class_gains[worst]:+.3f} on class {worst} (< {CLASS_GAIN} needed)")


def plateau(lower: dict, upper: dict) -> Plateau:
    """Compare the final held-out accuracy of a condition trained to one length with the next length's."""
    for measured in (lower, upper):
        if not measured["steps"]:
            raise ValueError("a run without checkpoints cannot be judged")
    if upper["steps"][-1] <= lower["steps"][-1]:
        raise ValueError(f"the next length must be longer: {upper['steps'][-1]} after {lower['steps'][-1]}")
    start = np.asarray(lower["accuracy"][-1]).mean(0)
    end = np.asarray(upper["accuracy"][-1]).mean(0)
    return Plateau(float(end.mean() - start.mean()), (end - start).tolist())


def choose(rungs: list[dict], ladder=LADDER, affordable: int = AFFORDABLE) -> tuple[int, str]:
    """The training length the rule picks from rungs (each {"steps", "passed"}; ``passed`` is None while
    the next length is untrained), with why."""
    judged = {r["steps"]: r["passed"] for r in rungs}
    for steps in (L for L in ladder if L <= affordable):
        if judged.get(steps) is None:
            raise ValueError(f"length {steps} has not been judged (it needs the next length trained); "
                             f"the ladder is tried in order {tuple(ladder)}")
        if judged[steps]:
            return steps, f"{steps:,} steps: the shortest length at which every condition had reached its plateau"
    return affordable, (f"{affordable:,} steps: at no affordable length had every condition reached its plateau, so "
                        "the longest affordable; the verdicts read each condition's plateau as a premise")


def _judge(lower: dict, upper: dict) -> None:
    """Record on ``lower`` (a rung) each condition's gain to ``upper`` and whether the rung passed."""
    nexts = {(c["dataset"], c["arch"], c["protocol"]): c for c in upper["conditions"]}
    for c in lower["conditions"]:
        judged = plateau(c, nexts[(c["dataset"], c["arch"], c["protocol"])])
        c.update(gain_to_next=judged.mean_gain, class_gains_to_next=judged.class_gains, plateau=judged.passed,
                 reason=judged.reason())
    lower["passed"] = all(c["plateau"] for c in lower["conditions"])


def run_curve(out: str | Path = "runs", result: Path = RESULT, progress: bool = True, *, preset: str = "cpu",
              ladder=LADDER, affordable: int = AFFORDABLE, datasets=DATASETS, conditions=CONDITIONS,
              networks: int = NETWORKS) -> dict:
    """Train the ladder's lengths in order, judging each against the next, until one passes or the length
    above the affordable ones is trained; writes the result file and returns it."""
    if affordable not in ladder or affordable == ladder[-1]:
        raise ValueError(f"affordable={affordable} must be a length of the ladder {tuple(ladder)} below its last")
    rungs = []
    bar = tqdm(total=len(ladder) * len(datasets) * len(conditions), desc="learning curve", unit="run",
               disable=not progress)
    for steps in ladder:
        rung = {"steps": steps, "passed": None, "conditions": []}
        for dataset, (arch, protocol) in ((d, c) for d in datasets for c in conditions):
            run_dir = train(curve_config(dataset, arch, protocol, steps, preset, networks), out, progress=progress)
            measured = measure(run_dir)
            accuracy = np.asarray(measured["accuracy"][-1])
            quarter, quarter_classes = last_quarter_gain(measured, steps)
            rung["conditions"].append({"dataset": dataset, "arch": arch, "protocol": protocol, "run": run_dir.name,
                                       **measured, "final": float(accuracy.mean()),
                                       "final_classes": accuracy.mean(0).tolist(), "last_quarter_gain": quarter,
                                       "last_quarter_class_gains": quarter_classes, "plateau": None})
            bar.update()
        rungs.append(rung)
        if len(rungs) > 1:
            _judge(rungs[-2], rung)
            if rungs[-2]["passed"] or rungs[-2]["steps"] == affordable:
                break
    bar.close()
    chosen, why = choose(rungs, ladder, affordable)
    summary = {"rule": RULE, "preset": preset, "ladder": list(ladder), "affordable": affordable,
               "budget_minutes": BUDGET_MINUTES, "datasets": list(datasets),
               "conditions": [list(c) for c in conditions], "networks": networks, "first_seed": FIRST_SEED,
               "eval_trials": EVAL_TRIALS, "mean_gain": MEAN_GAIN, "class_gain": CLASS_GAIN, "rungs": rungs,
               "chosen_steps": chosen, "why": why}
    store.write_json(Path(result), summary)
    return summary


def _label(c: dict) -> str:
    return f"{c['dataset']} {c['arch'].upper()}·{PROTOCOL_NAMES[c['protocol']]}"


def _yes_no(flag) -> str:
    return "not judged" if flag is None else ("yes" if flag else "no")


def format_curve(summary: dict) -> str:
    """The judged lengths as a plain-text table, then the chosen length."""
    lines = [f"{'steps':>6}  {'condition':<26}{'final':>7}{'gain to next':>14}{'worst class':>13}"
             f"{'last quarter':>14}  plateau"]
    for rung in summary["rungs"]:
        for c in rung["conditions"]:
            judged = c["plateau"] is not None
            to_next = f"{c['gain_to_next']:+.3f}" if judged else "—"
            worst = f"{max(c['class_gains_to_next']):+.3f}" if judged else "—"
            lines.append(f"{rung['steps']:>6}  {_label(c):<26}{c['final']:>7.3f}{to_next:>14}{worst:>13}"
                         f"{c['last_quarter_gain']:>+14.3f}  {_yes_no(c['plateau'])}")
    return "\n".join(lines + [f"chosen: {summary['why']}"])


def curve_markdown(summary: dict) -> str:
    """The judged lengths as the book's captioned table, then the choice."""
    from .chapter import Table

    rows = []
    for rung in summary["rungs"]:
        for c in rung["conditions"]:
            if c["plateau"] is None:
                to_next = worst = "— (last length trained)"
            else:
                k = int(np.argmax(c["class_gains_to_next"]))
                to_next, worst = f"{c['gain_to_next']:+.3f}", f"{c['class_gains_to_next'][k]:+.3f} (class {k})"
            rows.append((f"{rung['steps']:,}", f"`{c['dataset']}`", f"{c['arch'].upper()} · {PROTOCOL_NAMES[c['protocol']]}",
                         f"{c['final']:.3f}", to_next, worst, f"{c['last_quarter_gain']:+.3f}", _yes_no(c["plateau"])))
    table = Table(("steps L", "dataset", "condition", "accuracy at L", "gain to the next length",
                   "largest class gain to the next length", "gain over L's last quarter (first rule)", "plateau"), rows,
                  caption=f"The learning-curve runs ({summary['networks']} networks each): held-out accuracy at the "
                          "trained delays at the end of training; what the next length gained over it (the rule), in "
                          "the networks' mean and per class; and, for comparison, the gain within the run over its "
                          "last quarter (step 0.75 L to L), which the first rule read.")
    # the rule itself is stated once, by the page that includes this (it was written before the ladder ran)
    return ("<!-- written by `memrnn curve` from book/learning_curve.json: do not edit -->\n\n"
            + table._repr_markdown_() + f"\n\n**Chosen:** {summary['why']}.\n")


def write_page(summary: dict, book_dir: Path = BOOK) -> None:
    """The table and figure the book's Deviations page includes."""
    import matplotlib.pyplot as plt

    from . import plots

    store.atomic_write(Path(book_dir) / TABLE, curve_markdown(summary).encode())
    fig = plots.learning_curves(summary["rungs"], summary["chosen_steps"])
    (Path(book_dir) / FIGURE).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(book_dir) / FIGURE, format="svg", metadata={"Date": None})
    plt.close(fig)

