"""One plotting function per figure of the book. Each takes results (JSON-like) and returns a Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

CHANCE = 0.1


def mean_ci(values, axis=0, level=0.95):
    """Mean and half-width of the t-based confidence interval along ``axis``."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    mean = values.mean(axis)
    if n < 2:
        return mean, np.zeros_like(mean)
    return mean, stats.sem(values, axis=axis) * stats.t.ppf((1 + level) / 2, n - 1)


def condition_label(row) -> str:
    return f"{row['arch'].upper()} {row['protocol']}"


def trial_frames(frames, trigger, label, stimulus_time, report_time, image_shape):
    """The frames of one trial as images, with the stimulus and the trigger marked."""
    T = len(frames)
    fig, axes = plt.subplots(1, T, figsize=(T * 0.8, 1.6))
    for t, ax in enumerate(axes):
        image = np.asarray(frames[t]).reshape(image_shape)
        ax.imshow(image.transpose(1, 2, 0) if image_shape[0] == 3 else image[0], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        title = f"t={t}"
        if t == stimulus_time:
            title += f"\nimage ({label})"
        if trigger[t]:
            title += "\ntrigger"
        ax.set_title(title, fontsize=7)
    fig.suptitle("one training trial: pixel-noise frames, an image once, a trigger to report", fontsize=9)
    return fig


def trained_accuracy(rows):
    """Trained-delay accuracy per condition: one dot per network, bar = mean."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for i, row in enumerate(rows):
        values = np.asarray(row["trained_delay_accuracy"])
        ax.bar(i, values.mean(), color="#9ecae1")
        ax.plot(np.full(len(values), i) + np.linspace(-0.2, 0.2, len(values)), values, "k.", ms=4)
    ax.set_xticks(range(len(rows)), [condition_label(r) for r in rows], rotation=30, ha="right")
    ax.axhline(CHANCE, color="grey", ls=":", label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("report accuracy, delays 4–19\n(fraction of held-out trials)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def extrapolation(rows, trained_max: int = 19):
    """Accuracy versus delay, mean and 95% CI over networks, one line per condition."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for row in rows:
        mean, half = mean_ci(row["overall"])
        line, = ax.plot(row["delays"], mean, marker="o", ms=3, label=condition_label(row))
        ax.fill_between(row["delays"], mean - half, mean + half, color=line.get_color(), alpha=0.2)
    ax.axvline(trained_max, color="grey", ls="--", lw=1, label="longest trained delay")
    ax.axhline(CHANCE, color="grey", ls=":", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("delay between image and trigger (frames)")
    ax.set_ylabel("report accuracy\n(fraction of held-out trials)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def class_extrapolation(extrapolation_section, title: str):
    """Accuracy per class and delay, averaged over networks."""
    accuracy = np.asarray(extrapolation_section["accuracy"]).mean(0)  # (delay, class)
    fig, ax = plt.subplots(figsize=(6, 2.8))
    image = ax.imshow(accuracy.T, aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(extrapolation_section["delays"])), extrapolation_section["delays"])
    ax.set_yticks(range(accuracy.shape[1]))
    ax.set_xlabel("delay (frames)")
    ax.set_ylabel("image class")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="accuracy (fraction)")
    fig.tight_layout()
    return fig


def speed_histogram(at_centroid, at_point):
    """log10 speed at the class centroids and at the slow points found from them."""
    fig, ax = plt.subplots(figsize=(5, 3))
    floor = 1e-15
    bins = np.linspace(-15, 1, 49)
    ax.hist(np.log10(np.maximum(at_centroid, floor)), bins=bins, alpha=0.6, label="class centroid (start)")
    ax.hist(np.log10(np.maximum(at_point, floor)), bins=bins, alpha=0.6, label="slow point found")
    ax.set_xlabel(r"log$_{10}$ speed $\sqrt{q}$ (state units per frame)")
    ax.set_ylabel("count (network × class)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def valley_drift(curves: dict):
    """Per condition, against extra search iterations along the slow valleys: the fraction of points
    that still report their class, the median speed and the median distance from the stopping point.
    ``curves``: label -> {"iterations", "own_class", "speed", "distance"} (lists of equal length)."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for label, c in curves.items():
        for ax, key in zip(axes, ("own_class", "speed", "distance")):
            ax.plot(c["iterations"], c[key], marker="o", ms=3, label=label)
    axes[0].set_ylabel("points reporting their class (fraction)")
    axes[0].set_ylim(0, 1.02)
    axes[1].set_ylabel(r"median speed $\sqrt{q}$ (state units per frame)")
    axes[1].set_yscale("log")
    axes[2].set_ylabel("median distance from the slow point (state units)")
    for ax in axes:
        ax.set_xlabel("extra LM iterations along the valley")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def state_space(trajectories, labels, points, centroids):
    """Trajectories (n, T, S) after an image, coloured by class, with centroids and slow points,
    on the first two principal components of the trajectory states."""
    flat = trajectories.reshape(-1, trajectories.shape[-1])
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    project = lambda x: (x - mean) @ vt[:2].T  # noqa: E731
    fig, ax = plt.subplots(figsize=(5, 4))
    colours = plt.cm.tab10(np.arange(10))
    for trajectory, label in zip(trajectories, labels):
        xy = project(trajectory)
        ax.plot(xy[:, 0], xy[:, 1], color=colours[label], lw=0.4, alpha=0.4)
    c, p = project(centroids), project(points)
    ax.scatter(c[:, 0], c[:, 1], c=colours, marker="o", edgecolor="k", s=40, label="class centroid")
    ax.scatter(p[:, 0], p[:, 1], c=colours, marker="X", edgecolor="k", s=80, label="slow point")
    for k in range(len(p)):
        ax.annotate(str(k), p[k], fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("PC 1 of hidden state")
    ax.set_ylabel("PC 2 of hidden state")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def speed_vs_memory(rows):
    """One dot per (network, class): slow-point speed against long-delay accuracy."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    conditions = sorted({(r["arch"], r["protocol"]) for r in rows})
    for arch, protocol in conditions:
        subset = [r for r in rows if (r["arch"], r["protocol"]) == (arch, protocol)]
        ax.scatter([r["log10_speed"] for r in subset], [r["long_delay_accuracy"] for r in subset], s=10,
                   alpha=0.7, label=f"{arch.upper()} {protocol}")
    ax.axhline(CHANCE, color="grey", ls=":", lw=1)
    ax.set_xlabel(r"log$_{10}$ slow-point speed $\sqrt{q}$")
    ax.set_ylabel("long-delay accuracy of the class\n(fraction of held-out trials)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def formation(result, member: int, title: str):
    """Slow-point speed of each class through training, with curriculum events marked."""
    steps = result["steps"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    colours = plt.cm.tab10(np.arange(10))
    for k, speeds in enumerate(result["speed"][member]):
        ax.plot(steps, np.maximum(speeds, 1e-15), color=colours[k], lw=1, label=str(k))
    for event in result["curriculum_events"]:
        ax.axvline(event["step"], color="grey", lw=0.6, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("training step (dashed: curriculum events)")
    ax.set_ylabel(r"speed $\sqrt{q}$ at the traced point")
    ax.set_title(title, fontsize=9)
    ax.legend(title="class", fontsize=6, ncol=5)
    fig.tight_layout()
    return fig


def regularization(curves: dict, delays, title: str):
    """Accuracy versus delay after each fine-tuning mode (mean and 95% CI over networks)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for mode, overall in curves.items():
        mean, half = mean_ci(overall)
        line, = ax.plot(delays, mean, marker="o", ms=3, label=mode)
        ax.fill_between(delays, mean - half, mean + half, color=line.get_color(), alpha=0.2)
    ax.axhline(CHANCE, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("delay between image and trigger (frames)")
    ax.set_ylabel("report accuracy\n(fraction of held-out trials)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lambda_sweep(table):
    """Accuracy after slow-point fine-tuning against the penalty strength; table[0] is control."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    lams = [r["lam"] for r in table[1:]]
    for key, label in (("long", "long-delay accuracy (delays ≥ 100)"), ("trained", "trained-delay accuracy")):
        line, = ax.plot(lams, [r[key]["after"] for r in table[1:]], marker="o", label=label)
        ax.axhline(table[0][key]["after"], color=line.get_color(), ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("penalty strength λ (dotted: control, λ = 0)")
    ax.set_ylabel("accuracy (fraction of held-out trials)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def switch_effects(table: list[dict]):
    """Each switch's change against the reference model, with 95% intervals, one panel per measure."""
    panels = (("trained", "trained-delay accuracy\n(change)"), ("long", "long-delay accuracy\n(change)"),
              ("correlation", "speed-memory Spearman r\n(change)"), ("gain", "fine-tuning gain\n(change)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 0.45 * len(table) + 1.6), sharey=True)
    y = np.arange(len(table))[::-1]
    for ax, (name, label) in zip(axes, panels):
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
    axes[0].set_yticks(y, [row["switch"] for row in table], fontsize=9)
    fig.suptitle("each switch minus the reference model (95% intervals; red: excludes 0)", fontsize=10)
    fig.tight_layout()
    return fig
