"""One plotting function per figure of the book. Each takes results (JSON-like) and returns a Figure.

One palette and one naming of conditions serve the whole book (:func:`condition_label`,
:func:`condition_style`). Figures are drawn for the narrowest page they are shown on: at most
``WIDTH`` inches wide with text of at least 9 pt, so that on a phone (400 px, where the page scales a
figure down to about 340 px) no text is smaller than 9 CSS px; panels are stacked, not set side by
side; tick labels are plain text (``1e-3``, no small superscripts). Legends sit below the axes, never
over the data.
"""
from __future__ import annotations

import functools

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, NullFormatter
from scipy import stats

from .claims import dataset_name
from .protocols import PROTOCOL_NAMES

CHANCE = 0.1
WIDTH = 4.2  # inches: a 400 px phone shows a figure at about 337 px, so 9 pt text stays above 9 CSS px even
# when the saved figure grows by the text it crops to (a 3D figure's labels)
MIN_FONT = 9
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 10,
         "svg.fonttype": "none"}
plt.rcParams.update(STYLE)
# hue = protocol, shade = architecture; marker and line style = architecture
_HUES = {"decu": ("#08519c", "#6baed6", "#2171b5"), "vocu": ("#a63603", "#fd8d3c", "#e6550d"),
         "none": ("#006d2c", "#74c476", "#31a354")}
_ARCH_INDEX = {"gru": 0, "lstm": 1, "rnn": 2}
_ARCH_MARKS = {"gru": ("o", "-"), "lstm": ("s", "--"), "rnn": ("^", ":")}
MODE_COLOURS = {"before fine-tuning": "#636363", "control": "#000000", "slowpoints": "#d62728",
                "centermass": "#9467bd", "tar": "#17becf"}
CLASS_COLOURS = plt.cm.tab10(np.arange(10))


def _plain_log_tick(value, _position) -> str:
    """A log axis's tick as plain text of the axis's font size: 10, 100 or 1e-3, never a small superscript."""
    if value <= 0:
        return ""
    exponent = np.log10(value)
    if abs(exponent - round(exponent)) > 1e-6:
        return ""
    return f"{value:g}" if -2 <= exponent <= 4 else f"1e{round(exponent)}"


def page_figure(draw):
    """A figure of the book, checked for the page: at most ``WIDTH`` wide, no text under ``MIN_FONT``,
    log axes labelled in plain text."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        fig = draw(*args, **kwargs)
        if fig.get_figwidth() > WIDTH + 1e-9:
            raise ValueError(f"{draw.__name__} draws {fig.get_figwidth():g} in wide; the page takes at most {WIDTH} in")
        for ax in fig.axes:
            for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
                if scale == "log":
                    axis.set_major_formatter(FuncFormatter(_plain_log_tick))
                    axis.set_minor_formatter(NullFormatter())
        for text in fig.findobj(matplotlib.text.Text):
            if text.get_fontsize() < MIN_FONT:
                text.set_fontsize(MIN_FONT)
        return fig
    return drawn


def _legend_below(fig, ax, ncol: int = 2) -> None:
    """The axes' legend under the figure, never over the data (needs a constrained layout)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def _spread(values, gap: float) -> np.ndarray:
    """Positions near ``values`` at least ``gap`` apart, order kept: end labels that do not pile up."""
    values = np.asarray(values, float)
    order = np.argsort(values)
    placed = values[order].copy()
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    placed -= (placed - values[order]).mean()  # centred on the lines they label
    out = np.empty_like(placed)
    out[order] = placed
    return out


def book_figures() -> None:
    """Show figures as SVG (vector, sharp at any zoom) in notebooks; call once per chapter."""
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("svg")


def mean_ci(values, axis=0, level=0.95):
    """Mean and half-width of the t-based confidence interval along ``axis``."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    mean = values.mean(axis)
    if n < 2:
        return mean, np.zeros_like(mean)
    return mean, stats.sem(values, axis=axis) * stats.t.ppf((1 + level) / 2, n - 1)


def condition_label(row) -> str:
    """The book's one name for a condition, e.g. "GRU · DeCu"."""
    return f"{row['arch'].upper()} · {PROTOCOL_NAMES[row['protocol']]}"


def datasets_of(rows) -> list[str]:
    """The datasets of ``rows`` in the order they first appear."""
    return list(dict.fromkeys(r["dataset"] for r in rows))


def full_label(row) -> str:
    """A condition's name with its dataset, for tables and panels that mix datasets."""
    return f"{dataset_name(row['dataset'])} · {condition_label(row)}"


def _panels(rows, size, across: bool = False):
    """One axes per dataset of ``rows`` (stacked, or side by side with ``across``), each ``size`` inches."""
    datasets = datasets_of(rows)
    shape = (1, len(datasets)) if across else (len(datasets), 1)
    width, height = size
    fig, axes = plt.subplots(*shape, figsize=(width, height * shape[0] + (0.6 if shape[0] > 1 else 0)), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for ax, dataset in zip(axes.flat, datasets):
        if len(datasets) > 1:
            ax.set_title(dataset_name(dataset))
        yield fig, ax, [r for r in rows if r["dataset"] == dataset]


def condition_style(arch: str, protocol: str) -> dict:
    """Colour, marker and line style of a condition, the same in every figure."""
    marker, linestyle = _ARCH_MARKS[arch]
    return {"color": _HUES[protocol][_ARCH_INDEX[arch]], "marker": marker, "linestyle": linestyle}


@page_figure
def trial_frames(frames, trigger, label, stimulus_time, report_time, image_shape):
    """The frames of one trial as images, with the stimulus and the trigger marked."""
    T = len(frames)
    rows = -(-T // 5)
    fig, axes = plt.subplots(rows, 5, figsize=(WIDTH, 1.15 * rows + 0.2))
    for ax in axes.flat[T:]:
        ax.axis("off")
    for t, ax in enumerate(axes.flat[:T]):
        image = np.asarray(frames[t]).reshape(image_shape)
        ax.imshow(image.transpose(1, 2, 0) if image_shape[0] == 3 else image[0], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        title = f"t={t}"
        if t == stimulus_time:
            title += f"\nimage: {label}"
        if trigger[t]:
            title += "\ntrigger"
        ax.set_title(title, fontsize=9, color="#c00000" if t == stimulus_time or trigger[t] else "black")
    fig.tight_layout()
    return fig


@page_figure
def trained_accuracy(rows):
    """Trained-delay accuracy per condition: one dot per network, bar = the median network (C1's estimator);
    a panel per dataset."""
    n = len(datasets_of(rows))
    for fig, ax, here in _panels(rows, (WIDTH, 3.4 if n > 1 else 3.6)):
        for i, row in enumerate(here):
            values = np.asarray(row["trained_delay_accuracy"])
            ax.bar(i, np.median(values), color=condition_style(row["arch"], row["protocol"])["color"], alpha=0.6)
            ax.plot(np.full(len(values), i) + np.linspace(-0.2, 0.2, len(values)), values, "k.", ms=4)
        ax.set_xticks(range(len(here)), [condition_label(r) for r in here], rotation=30, ha="right")
        ax.axhline(CHANCE, color="grey", ls=":")
        ax.set_ylim(0, 1)
    ax.annotate("chance", (1, CHANCE), xycoords=("axes fraction", "data"), xytext=(2, 0), textcoords="offset points",
                va="center", fontsize=9, color="grey")
    for ax in fig.axes:
        ax.set_ylabel("report accuracy, delays 4–19\n(fraction of held-out trials)")
    return fig


@page_figure
def extrapolation(rows, trained_max: int = 19):
    """Accuracy versus delay, mean and 95% CI over networks, one line per condition; a panel per dataset."""
    height = 4.6 if len(datasets_of(rows)) == 1 else 3.0
    for fig, ax, here in _panels(rows, (WIDTH, height)):
        for row in here:
            mean, half = mean_ci(row["overall"])
            style = condition_style(row["arch"], row["protocol"])
            ax.plot(row["delays"], mean, ms=4, label=condition_label(row), **style)
            ax.fill_between(row["delays"], mean - half, mean + half, color=style["color"], alpha=0.15)
        ax.axvline(trained_max, color="grey", ls="--", lw=1, label="longest trained delay")
        ax.axhline(CHANCE, color="grey", ls=":", lw=1, label="chance")
        ax.set_xscale("log")
        ax.set_ylabel("report accuracy\n(fraction of held-out trials)")
        ax.set_ylim(0, 1)
    ax.set_xlabel("delay between image and trigger (frames)")
    _legend_below(fig, fig.axes[0], ncol=2)
    return fig


@page_figure
def class_extrapolation(sections: dict):
    """Accuracy per class and delay, averaged over networks; one panel per title in ``sections``."""
    fig, axes = plt.subplots(len(sections), 1, figsize=(WIDTH, 2.8 * len(sections)), squeeze=False)
    for ax, (title, section) in zip(axes[:, 0], sections.items()):
        accuracy = np.asarray(section["accuracy"]).mean(0)  # (delay, class)
        image = ax.imshow(accuracy.T, aspect="auto", vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(section["delays"])), section["delays"])
        ax.set_yticks(range(accuracy.shape[1]))
        ax.set_xlabel("delay (frames)")
        ax.set_ylabel("image class")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    return fig


@page_figure
def speed_histogram(at_centroid, at_point):
    """log10 speed at the class centroids and at the slow points found from them."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4), layout="constrained")
    logs = [np.log10(np.maximum(np.asarray(v, dtype=float), 1e-15)) for v in (at_centroid, at_point)]
    low, high = min(v.min() for v in logs), max(v.max() for v in logs)
    bins = np.linspace(np.floor(low * 4) / 4, np.ceil(high * 4) / 4 + 0.25, 40)  # the data's range, not a fixed one
    ax.hist(logs[0], bins=bins, alpha=0.6, color="#636363", label="class centroid (start)")
    ax.hist(logs[1], bins=bins, alpha=0.6, color="#d62728", label="slow point found")
    ax.set_xlabel("log₁₀ speed √q (state units per frame)")
    ax.set_ylabel("count (network × class)")
    _legend_below(fig, ax)
    return fig


@page_figure
def valley_drift(curves: dict):
    """Per condition, against extra search iterations along the slow valleys: the fraction of points
    that still report their class, the median speed and the median distance from the stopping point.
    ``curves``: (arch, protocol) -> {"iterations", "own_class", "speed", "distance"} (equal-length lists).
    Panels are stacked so each keeps the page's full width."""
    fig, axes = plt.subplots(3, 1, figsize=(WIDTH, 7.6), sharex=True, layout="constrained")
    for (arch, protocol), c in curves.items():
        for ax, key in zip(axes, ("own_class", "speed", "distance")):
            ax.plot(c["iterations"], c[key], ms=4, label=condition_label({"arch": arch, "protocol": protocol}),
                    **condition_style(arch, protocol))
    axes[0].set_ylabel("reporting their\nclass (fraction)")
    axes[0].set_ylim(0, 1.02)
    axes[1].set_ylabel("median speed √q\n(state units per frame)")
    axes[1].set_yscale("log")
    axes[2].set_ylabel("median distance\nfrom the point")
    axes[2].set_xlabel("extra Levenberg–Marquardt iterations along the valley")
    _legend_below(fig, axes[0], ncol=2)
    return fig


@page_figure
def state_space(trajectories, labels, points, centroids):
    """Trajectories (n, T, S) after an image, coloured by class, with centroids and slow points,
    on the first two principal components of the trajectory states."""
    flat = trajectories.reshape(-1, trajectories.shape[-1])
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    project = lambda x: (x - mean) @ vt[:2].T  # noqa: E731
    fig, ax = plt.subplots(figsize=(WIDTH, 4.4), layout="constrained")
    colours = CLASS_COLOURS
    for trajectory, label in zip(trajectories, labels):
        xy = project(trajectory)
        ax.plot(xy[:, 0], xy[:, 1], color=colours[label], lw=0.4, alpha=0.4)
    c, p = project(centroids), project(points)
    ax.scatter(c[:, 0], c[:, 1], c=colours, marker="o", edgecolor="k", s=40, label="class centroid")
    ax.scatter(p[:, 0], p[:, 1], c=colours, marker="X", edgecolor="k", s=80, label="slow point")
    for k in range(len(p)):
        ax.annotate(str(k), p[k], fontsize=10, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("PC 1 of hidden state")
    ax.set_ylabel("PC 2 of hidden state")
    _legend_below(fig, ax)
    return fig


@page_figure
def speed_vs_memory(rows):
    """One dot per (network, class): slow-point speed against long-delay accuracy; a panel per dataset."""
    height = 4.6 if len(datasets_of(rows)) == 1 else 3.0
    for fig, ax, here in _panels(rows, (WIDTH, height)):
        for arch, protocol in sorted({(r["arch"], r["protocol"]) for r in here}):
            subset = [r for r in here if (r["arch"], r["protocol"]) == (arch, protocol)]
            style = condition_style(arch, protocol)
            ax.scatter([r["log10_speed"] for r in subset], [r["long_delay_accuracy"] for r in subset], s=14,
                       alpha=0.7, color=style["color"], marker=style["marker"],
                       label=condition_label({"arch": arch, "protocol": protocol}))
        ax.axhline(CHANCE, color="grey", ls=":", lw=1)
        ax.set_ylabel("long-delay accuracy of the class\n(fraction of held-out trials)")
    ax.set_xlabel("log₁₀ slow-point speed √q (state units per frame)")
    _legend_below(fig, fig.axes[0], ncol=2)
    return fig


@page_figure
def formation(results: dict, member: int):
    """Slow-point speed of each class through training, one panel per title in ``results``; each line is
    labelled with its class at its end (no legend of ten look-alike colours), faint where the traced
    point does not count as the class's memory, curriculum events dashed."""
    fig, axes = plt.subplots(len(results), 1, figsize=(WIDTH, 2.8 * len(results)), squeeze=False)
    for ax, (title, result) in zip(axes[:, 0], results.items()):
        steps = result["steps"]
        curves = np.maximum(np.asarray(result["speed"][member], float), 1e-15)
        ends = np.log10(curves[:, -1])
        span = max(np.ptp(np.log10(curves)), 1.0)
        counted = np.asarray(result["same_memory"][member], bool)
        labels_at = _spread(ends, span / 10)
        for k, (speeds, label_at) in enumerate(zip(curves, labels_at)):
            # faint where the traced point does not count as its class's memory (memrnn.formation)
            ax.plot(steps, speeds, color=CLASS_COLOURS[k], lw=0.8, alpha=0.35)
            ax.plot(steps, np.where(counted[k], speeds, np.nan), color=CLASS_COLOURS[k], lw=1.4)
            ax.annotate(str(k), (steps[-1], 10 ** label_at), xytext=(3, 0), textcoords="offset points",
                        color=CLASS_COLOURS[k], fontsize=9, va="center", annotation_clip=False)
        for event in result["curriculum_events"]:
            ax.axvline(event["step"], color="grey", lw=0.6, ls="--")
        ax.set_yscale("log")
        ax.set_ylabel("speed √q (state\nunits per frame)")
        ax.set_title(title)
        # room inside the axes for the class labels, clear of the last tick label and of the title
        ax.set_xlim(steps[0], steps[-1] + 0.08 * (steps[-1] - steps[0]))
        logs = np.log10(curves)
        ax.set_ylim(10 ** (min(logs.min(), labels_at.min()) - span / 20), 10 ** (max(logs.max(), labels_at.max()) + span / 20))
    axes[-1, 0].set_xlabel("training step\n(dashed: curriculum events; labels: image class)")
    fig.tight_layout()
    return fig


@page_figure
def regularization(panels: dict, delays):
    """Accuracy versus delay after each fine-tuning mode (mean and 95% CI over networks);
    ``panels``: title -> {mode: overall accuracy (networks, delays)}, one panel each."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(WIDTH, 3.0 * len(panels) + 0.8), squeeze=False,
                             layout="constrained")
    for ax, (title, curves) in zip(axes[:, 0], panels.items()):
        for mode, overall in curves.items():
            mean, half = mean_ci(overall)
            colour = MODE_COLOURS.get(mode)
            line, = ax.plot(delays, mean, marker="o", ms=4, color=colour, label=mode)
            ax.fill_between(delays, mean - half, mean + half, color=line.get_color(), alpha=0.15)
        ax.axhline(CHANCE, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_ylabel("report accuracy")
        ax.set_title(title)
    axes[-1, 0].set_xlabel("delay between image and trigger (frames)")
    _legend_below(fig, axes[0, 0], ncol=2)
    return fig


@page_figure
def lambda_sweep(table):
    """Accuracy after slow-point fine-tuning against the penalty strength; table[0] is control."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4), layout="constrained")
    lams = [r["lam"] for r in table[1:]]
    for key, label in (("long", "long-delay accuracy (delays ≥ 100)"), ("trained", "trained-delay accuracy")):
        line, = ax.plot(lams, [r[key]["after"] for r in table[1:]], marker="o", label=label)
        ax.axhline(table[0][key]["after"], color=line.get_color(), ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("penalty strength λ (dotted: control, λ = 0)")
    ax.set_ylabel("accuracy (fraction of held-out trials)")
    ax.set_ylim(0, 1)
    _legend_below(fig, ax, ncol=1)
    return fig


@page_figure
def blind_corner(curves: dict, corner_loss: float):
    """Training loss against step per condition (mean over networks), with the blind corner's loss."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6), layout="constrained")
    for label, (steps, losses) in curves.items():
        ax.plot(steps, np.mean(losses, axis=1), label=label)
    ax.axhline(corner_loss, color="black", ls=":", lw=1, label=f"blind corner, {corner_loss:.4f}")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (reference form)")
    _legend_below(fig, ax, ncol=1)
    return fig


@page_figure
def switch_effects(table: list[dict]):
    """Each switch's change against the reference model, with 95% intervals, one panel per measure."""
    panels = (("trained", "trained-delay accuracy\n(change)"), ("long", "long-delay accuracy\n(change)"),
              ("correlation", "speed-memory Spearman r\n(change)"), ("gain", "fine-tuning gain\n(change)"))
    fig, axes = plt.subplots(4, 1, figsize=(WIDTH, 4 * (0.3 * len(table) + 1.0) + 0.4), sharey=True,
                             layout="constrained")
    y = np.arange(len(table))[::-1]
    for ax, (name, label) in zip(axes.flat, panels):
        for yi, row in zip(y, table):
            value = row[name]
            if value is None:
                continue
            change = value["difference"] if name == "correlation" else value["change"]
            low, high = value["ci95"]
            if low is None:
                ax.plot(change, yi, "o", color="0.5")
                continue
            excludes = low > 0 or high < 0
            ax.errorbar(change, yi, xerr=[[change - low], [high - change]], fmt="o", capsize=3,
                        color="C3" if excludes else "0.4")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel(label, fontsize=9)
        ax.tick_params(labelsize=9)
    for ax in axes:
        ax.set_yticks(y, [row["switch"] for row in table], fontsize=9)
    fig.suptitle("each switch minus the reference model\n(95% intervals; red: excludes 0)", fontsize=10)
    return fig


@page_figure
def paired_gains(groups: dict, dramatic: float):
    """Per network, retention (long- over trained-delay accuracy) after slow-point fine-tuning minus each
    comparison, one row per (group, comparison): the paired differences C6's verdict rests on, with their medians."""
    rows = [(f"{group}\n{name}", np.asarray(values, float)) for group, comparisons in groups.items()
            for name, values in comparisons.items()]
    fig, ax = plt.subplots(figsize=(WIDTH, 0.5 * len(rows) + 1.8), layout="constrained")
    for i, (_, values) in enumerate(rows):
        y = len(rows) - 1 - i
        ax.plot(values, y + np.linspace(-0.15, 0.15, len(values)), "o", ms=4, color="#d62728", alpha=0.6)
        ax.plot([np.median(values)] * 2, [y - 0.3, y + 0.3], color="k", lw=2)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(dramatic, color="grey", ls="--", lw=1)
    ax.annotate(f"named effect {dramatic:+.2f}", (dramatic, 1), xycoords=("data", "axes fraction"),
                xytext=(-3, -10), textcoords="offset points", fontsize=9, color="grey", ha="right")
    ax.set_yticks(range(len(rows))[::-1], [label for label, _ in rows], fontsize=9)
    ax.set_xlabel("retention (long- over trained-delay\naccuracy): slow-point fine-tuning\nminus the comparison\n"
                  "(one dot per network; bar: median)")
    return fig


@page_figure
def flipflop_fixed_points(trajectories, stable, unstable, corners, shown: int = 30):
    """The flip-flop network's trajectories (n, T, H) and its fixed points on the top three principal
    components of the trajectory states (the first ``shown`` trajectories drawn); stable points
    labelled with the bits they read out."""
    flat = trajectories.reshape(-1, trajectories.shape[-1])
    mean = flat.mean(0)
    _, singular, vt = np.linalg.svd(flat - mean, full_matrices=False)
    explained = singular[:3] ** 2 / (singular ** 2).sum()
    project = lambda x: (np.asarray(x).reshape(-1, len(mean)) - mean) @ vt[:3].T  # noqa: E731
    fig = plt.figure(figsize=(WIDTH - 0.4, 4.4), layout="constrained")  # its axis labels stick out
    ax = fig.add_subplot(projection="3d")
    for trajectory in trajectories[:shown]:
        ax.plot(*project(trajectory).T, color="#969696", lw=0.4, alpha=0.6)
    s, u = project(stable), project(unstable)
    ax.scatter(*s.T, color="#08519c", s=50, depthshade=False, label="stable fixed point")
    ax.scatter(*u.T, facecolor="white", edgecolor="#d62728", s=50, depthshade=False, label="unstable fixed point")
    for xyz, bits in zip(s, corners):
        ax.text(*xyz, " " + "".join("+" if b > 0 else "−" for b in bits), fontsize=9)
    for axis, k in zip((ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), range(3)):
        axis(f"PC {k + 1} ({explained[k]:.0%})")
    _legend_below(fig, ax)
    return fig


@page_figure
def holding_vs_speed(speed, radius, holding, noise):
    """Per stable fixed point: mean holding time under input noise against its speed and against the
    modulus of its Jacobian's largest eigenvalue (the slowest decay). Speeds are floored at 1e-12 for
    the log axis (an exact fixed point has speed 0)."""
    fig, axes = plt.subplots(2, 1, figsize=(WIDTH, 5.6), sharey=True)
    for ax, x, label in ((axes[0], np.maximum(speed, 1e-12), "speed √q at the point"),
                         (axes[1], radius, "largest |λ| of the Jacobian")):
        ax.scatter(x, holding, color="#08519c", edgecolor="k", s=40)
        ax.set_xlabel(label)
    axes[0].set_xscale("log")
    for ax in axes:
        ax.set_ylabel(f"mean steps holding\nits bits (noise σ = {noise:g})")
    fig.tight_layout()
    return fig


@page_figure
def learning_curves(rungs: list[dict], chosen_steps: int):
    """Held-out trained-delay accuracy at the end of training against the training length, two stacked
    panels per dataset: every condition's mean over its networks, then per class for the condition whose
    class gained most from one length to the next; dotted: the chosen length."""
    conditions = [c for rung in rungs for c in rung["conditions"]]
    datasets = sorted({c["dataset"] for c in conditions}, key=[c["dataset"] for c in conditions].index)
    fig, axes = plt.subplots(2 * len(datasets), 1, figsize=(WIDTH, 3.0 * 2 * len(datasets) + 0.6), sharex=True,
                             layout="constrained")
    lengths = [rung["steps"] for rung in rungs]
    for (left, right), dataset in zip(axes.reshape(-1, 2), datasets):
        here = {}
        for c in conditions:
            if c["dataset"] == dataset:
                here.setdefault((c["arch"], c["protocol"]), []).append(c)
        for (arch, protocol), runs in here.items():
            left.plot([r["steps"][-1] for r in runs], [r["final"] for r in runs], ms=3,
                      label=condition_label(runs[0]), **condition_style(arch, protocol))
        judged = [c for runs in here.values() for c in runs if c.get("plateau") is not None] or \
            [c for runs in here.values() for c in runs]
        worst = max(judged, key=lambda c: max(c.get("class_gains_to_next") or c["last_quarter_class_gains"]))
        runs = here[(worst["arch"], worst["protocol"])]
        per_class = np.asarray([r["final_classes"] for r in runs])  # (lengths, classes)
        for k in range(per_class.shape[1]):
            right.plot([r["steps"][-1] for r in runs], per_class[:, k], color=CLASS_COLOURS[k], lw=1, marker="o",
                       ms=2, label=f"class {k}")
        for ax, title in ((left, f"{dataset}: every condition"), (right, f"{dataset}, {condition_label(worst)}:\nper class")):
            ax.axvline(chosen_steps, color="grey", ls=":", lw=1)
            ax.set_title(title)
            ax.set_ylim(0, 1)
            ax.set_xticks(lengths, [f"{L:,}" for L in lengths])
            ax.set_ylabel("accuracy, delays 4–19\n(held-out trials)")
        # each legend under its panel (the layout makes room), never over the data
        for ax, ncol in ((left, 2), (right, 5)):
            below = -0.25 if ax is axes[-1] else -0.08  # the last panel's legend goes under its axis label
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, below), ncol=ncol, frameon=False,
                      columnspacing=1.0, handlelength=1.5)
    axes[-1].set_xlabel("training length L (steps)")
    return fig
