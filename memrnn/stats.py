"""Does slow-point speed predict how long a memory lasts? Correlations with confidence intervals.

One observation per (network, class): the speed at the slow point found from that class's
centroid, and that class's accuracy at long delays (mean over the evaluated delays >=
``min_delay``). Correlations are between log10 speed and accuracy. Observations of one network
are not independent, so confidence intervals treat networks as the unit: a jackknife that leaves
out one network at a time (all its classes together), on Fisher's z scale, with Student's t on
networks - 1 degrees of freedom. A percentile bootstrap over 5 networks covers well below its
nominal 95%; this interval holds it (checked by simulation in the tests).

Means of paired differences get t-intervals (:func:`mean_ci`, for tables). The verdicts use
distribution-free intervals instead, because accuracies are bounded and skewed and a seed can fail:
:func:`median_ci` (the median network, from order statistics) and :func:`shift_ci` (the
Hodges-Lehmann shift between two groups of networks, inverting the exact Mann-Whitney test); both
keep their coverage whatever the distribution (measured in the tests). :func:`median_upper`
is the one-sided bound a Bonferroni-corrected test of a median reads; :func:`within_unit_spearman`
measures an association inside each network, apart from any between networks; :func:`detectable`
turns an interval into the smallest effect the same design detects with 80% power.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import stats

from . import store

SPEED_FLOOR = 1e-15  # speeds below this (exact fixed points) are taken as the floor on the log scale


def speed_memory_rows(run_dirs, min_delay: int = 100, section: str = "slowpoints") -> list[dict]:
    """One row per (run, member, class) with speed and long-delay accuracy; ``section`` names the
    slow-point analysis (default: the run's own search)."""
    rows = []
    for run_dir in run_dirs:
        store.trained_step(run_dir)  # results are read only from a finished run whose final checkpoint verifies
        summary = store.read_summary(run_dir)
        for needed, command in (("extrapolation", "evaluate"), (section, "slowpoints")):
            if needed not in summary:
                raise ValueError(f"{run_dir} has no {needed} results: run `memrnn {command} {run_dir}` first")
        ex, sp, config = summary["extrapolation"], summary[section], summary["config"]
        used = {"training": summary["train"]["steps"], "evaluate": ex.get("checkpoint_step"),
                "slowpoints": sp.get("checkpoint_step")}
        final = store.checkpoint_sha256(run_dir, summary["train"]["steps"])
        hashes = {"evaluate": ex.get("checkpoint_sha256"), "slowpoints": sp.get("checkpoint_sha256")}
        if len(set(used.values())) > 1 or set(hashes.values()) != {final}:
            raise ValueError(f"{run_dir} mixes checkpoints (final step and the step each result came from: "
                             f"{used}; results from a checkpoint other than the final one now there: "
                             f"{sorted(k for k, v in hashes.items() if v != final)}): rerun `memrnn evaluate "
                             f"{run_dir}` and `memrnn slowpoints {run_dir}`")
        long = [j for j, d in enumerate(ex["delays"]) if d >= min_delay]
        if not long:
            raise ValueError(f"{run_dir}: no evaluated delay >= {min_delay} (have {ex['delays']})")
        accuracy = np.asarray(ex["accuracy"])[:, long].mean(1)  # (member, class)
        for m, seed in enumerate(sp["member_seeds"]):
            for c, speed in enumerate(sp["speed"][m]):
                rows.append({"run": summary["run"], "dataset": config["dataset"], "arch": config["arch"],
                             "protocol": config["protocol"], "seed": seed, "class": c,
                             "speed": speed, "log10_speed": float(np.log10(max(speed, SPEED_FLOOR))),
                             "long_delay_accuracy": float(accuracy[m, c]),
                             "decodes_own_class": sp["decoded_class"][m][c] == c,
                             "in_region": sp["in_region"][m][c]})
    return rows


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its t-interval (for paired data pass the per-pair differences)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.sem(values) * stats.t.ppf((1 + level) / 2, len(values) - 1))
    return mean, mean - half, mean + half


def median_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Median and the order-statistic interval [x_(k), x_(n+1-k)] for it, exact for any continuous
    distribution (skewed, bounded, contaminated). It covers at least ``level`` where n allows; below
    n = 6 no such interval reaches 95%, and [min, max] is used (93.75% at n = 5)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n < 2:
        return (float(x[0]) if n else float("nan")), float("nan"), float("nan")
    k = max(1, int(stats.binom.ppf((1 - level) / 2, n, 0.5)))
    return float(np.median(x)), float(x[k - 1]), float(x[n - k])


def median_p(values, above: float = 0.0) -> float:
    """One-sided sign-test p-value that the median exceeds ``above`` (ties with it dropped)."""
    x = np.asarray(values, dtype=float)
    x = x[x != above]
    return float(stats.binomtest(int((x > above).sum()), len(x), alternative="greater").pvalue) if len(x) else 1.0


def shift_ci(a, b, level: float = 0.95) -> tuple[float, float, float, float]:
    """Hodges-Lehmann shift a - b (the median of all pairwise differences), the interval of shifts the
    exact two-sided Mann-Whitney test does not reject at 1 - ``level`` (order statistics of the
    pairwise differences), and that test's p-value at 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = np.sort(np.subtract.outer(a, b).ravel())
    p = float(stats.mannwhitneyu(a, b, method="exact").pvalue) if np.ptp(np.r_[a, b]) > 0 else 1.0
    k = _shift_rank(len(a), len(b), level)
    if k is None:
        return float(np.median(d)), -np.inf, np.inf, p
    return float(np.median(d)), float(d[k]), float(d[len(d) - 1 - k]), p


@functools.lru_cache
def _shift_rank(m: int, n: int, level: float) -> int | None:
    """0-based order statistic of the m * n pairwise differences that bounds :func:`shift_ci`'s
    interval, found by inverting scipy's exact test on tie-free data (it depends on m and n alone);
    None when no shift is rejected (tiny samples)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(m), rng.standard_normal(n)
    d = np.sort(np.subtract.outer(a, b).ravel())
    if stats.mannwhitneyu(a - (d[0] - 1), b, method="exact").pvalue > 1 - level:
        return None
    return next(i for i, mid in enumerate((d[1:] + d[:-1]) / 2)
                if stats.mannwhitneyu(a - mid, b, method="exact").pvalue > 1 - level)


def median_upper(values, alpha: float) -> float:
    """One-sided upper confidence bound for the median at error ``alpha``: the smallest order statistic
    x_(j) with P(at least j of n values below the median) <= ``alpha`` (exact for any continuous
    distribution); +inf when n is too small for any (so a test at a Bonferroni-corrected level
    cannot reject with few networks, rather than rejecting too often)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    for j in range(1, n + 1):
        if stats.binom.sf(j - 1, n, 0.5) <= alpha:
            return float(x[j - 1])
    return float("inf")


def within_unit_spearman(x, y, units) -> dict:
    """Spearman r of ``y`` with ``x`` inside each unit (a network: its classes), {unit: r}; a unit
    whose x or y does not vary, or with fewer than 2 observations, has no r and is left out."""
    x, y, units = np.asarray(x, float), np.asarray(y, float), np.asarray(units)
    out = {}
    for unit in dict.fromkeys(units.tolist()):
        inside = units == unit
        if inside.sum() >= 2 and np.ptp(x[inside]) > 0 and np.ptp(y[inside]) > 0:  # Spearman: Pearson of the ranks
            out[unit] = float(np.corrcoef(stats.rankdata(x[inside]), stats.rankdata(y[inside]))[0, 1])
    return out


def detectable(low: float, high: float, power: float = 0.8, level: float = 0.95) -> float:
    """The smallest true effect a test with this interval's width rejects "no effect" for with
    probability ``power``: (z_level + z_power) standard errors, the standard error read off the
    interval's half-width (normal approximation)."""
    z = stats.norm.ppf((1 + level) / 2)
    return float((high - low) / 2 * (1 + stats.norm.ppf(power) / z))


def spearman_ci(x, y, groups=None, level: float = 0.95) -> dict:
    """Spearman r with a leave-one-group-out jackknife interval (Fisher z, t on groups - 1 df).

    ``groups`` labels the independent units (networks); by default every observation is one."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    groups = np.arange(len(x)) if groups is None else np.unique(groups, return_inverse=True)[1]
    n = int(groups.max() + 1) if len(x) else 0
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": None, "p": None, "ci95": [None, None], "units": n}
    result = stats.spearmanr(x, y)
    return {"r": float(result.statistic), "p": float(result.pvalue),
            "ci95": _network_jackknife(x, y, groups, stats.spearmanr, level), "units": n}


def _fisher_z(x, y, fn):
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(np.arctanh(np.clip(fn(x, y).statistic, -1 + 1e-12, 1 - 1e-12)))


def correlate(rows: list[dict]) -> dict:
    """Spearman and Pearson correlation of log10 speed vs long-delay accuracy, with 95% CIs over networks."""
    x = np.array([r["log10_speed"] for r in rows])
    y = np.array([r["long_delay_accuracy"] for r in rows])
    networks = np.unique([f"{r['run']}/{r['seed']}" for r in rows], return_inverse=True)[1]
    out = {"n": len(rows), "networks": int(networks.max() + 1) if len(rows) else 0}
    for name, fn in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        if len(rows) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            out[name] = {"r": None, "p": None, "ci95": [None, None]}
            continue
        result = fn(x, y)
        out[name] = {"r": float(result.statistic), "p": float(result.pvalue), "ci95": _network_jackknife(x, y, networks, fn)}
    return out


def _jackknife_halfwidth(zs: np.ndarray, level: float) -> float:
    """Half-width of a jackknife t-interval from the leave-one-out estimates ``zs``."""
    n = len(zs)
    return float(stats.t.ppf((1 + level) / 2, n - 1) * np.sqrt((n - 1) / n * ((zs - zs.mean()) ** 2).sum()))


def _network_jackknife(x, y, networks, fn, level: float = 0.95) -> list:
    """Leave-one-network-out jackknife interval on Fisher's z scale, t on networks - 1 df."""
    n = int(networks.max() + 1)
    if n < 3:
        return [None, None]
    zs = np.array([_fisher_z(x[networks != k], y[networks != k], fn) for k in range(n)])
    if np.isnan(zs).any():
        return [None, None]
    z = _fisher_z(x, y, fn)
    half = _jackknife_halfwidth(zs, level)
    return [float(np.tanh(z - half)), float(np.tanh(z + half))]


def correlation_table(rows: list[dict], by=("dataset", "arch", "protocol")) -> list[dict]:
    """Pooled correlation, then one per condition."""
    table = [{"condition": "pooled", **correlate(rows)}]
    for key in sorted({tuple(r[k] for k in by) for r in rows}):
        subset = [r for r in rows if tuple(r[k] for k in by) == key]
        table.append({"condition": "/".join(key), **correlate(subset)})
    return table


def format_correlations(table: list[dict]) -> str:
    def fmt(v):
        return "   n/a" if v is None else f"{v:+.2f}"

    lines = [f"{'condition':<26}{'n':>5}{'nets':>5}  {'spearman [95% CI]':<26}{'pearson [95% CI]':<26}"]
    for row in table:
        cells = []
        for name in ("spearman", "pearson"):
            s = row[name]
            cells.append(f"{fmt(s['r'])} [{fmt(s['ci95'][0])}, {fmt(s['ci95'][1])}]".ljust(26))
        lines.append(f"{row['condition']:<26}{row['n']:>5}{row['networks']:>5}  " + "".join(cells))
    return "\n".join(lines)


def spearman_difference_ci(first: tuple, second: tuple, level: float = 0.95) -> dict:
    """Spearman r of ``second`` minus that of ``first``, each an (x, y, units) triple measured on the
    same units (networks paired by seed), with a leave-one-unit-out jackknife interval of the
    difference of Fisher z values (t on units - 1 df), mapped back as r differences at the point."""
    (x1, y1, u1), (x2, y2, u2) = [tuple(np.asarray(a) for a in part) for part in (first, second)]
    units = sorted(set(u1.tolist()) & set(u2.tolist()))
    # a constant measure has no ranking: its r is undefined (NaN, as the chapters say), not a warning
    r1, r2 = [np.nan if np.ptp(x) == 0 or np.ptp(y) == 0 else stats.spearmanr(x, y).statistic
              for x, y in ((x1, y1), (x2, y2))]
    out = {"first": float(r1), "second": float(r2), "difference": float(r2 - r1), "ci95": [None, None]}
    if len(units) < 3:
        return out
    z = _fisher_z(x2, y2, stats.spearmanr) - _fisher_z(x1, y1, stats.spearmanr)
    zs = np.array([_fisher_z(x2[u2 != k], y2[u2 != k], stats.spearmanr) - _fisher_z(x1[u1 != k], y1[u1 != k], stats.spearmanr)
                   for k in units])
    if np.isnan(zs).any():
        return out
    half = _jackknife_halfwidth(zs, level)
    out["z_difference"], out["z_ci95"] = float(z), [float(z - half), float(z + half)]
    out["ci95"] = [float(np.tanh(np.arctanh(r1) + z - half) - r1), float(np.tanh(np.arctanh(r1) + z + half) - r1)]
    return out


def clustered_proportion(hits, above: float = 0.5, level: float = 0.95) -> dict:
    """Share of True in ``hits`` (networks x items) with a Clopper-Pearson interval on the effective
    number of items, n / (1 + (m - 1) ICC) (Kish's design effect, the ICC from a one-way ANOVA over
    networks): items of one network are not independent. ``p``: one-sided, that the share exceeds ``above``."""
    hits = np.asarray(hits, dtype=bool)
    networks, m = hits.shape
    per, share = hits.mean(1), float(hits.mean())
    icc = 0.0
    if networks > 1 and m > 1:
        between = m * ((per - share) ** 2).sum() / (networks - 1)
        within = (m * per * (1 - per)).sum() / (networks * (m - 1))
        if between + (m - 1) * within > 0:
            icc = float(np.clip((between - within) / (between + (m - 1) * within), 0, 1))
    n = max(1, round(hits.size / (1 + (m - 1) * icc)))
    k = round(share * n)
    ci = stats.binomtest(k, n).proportion_ci(level, method="exact")
    return {"share": share, "ci95": [float(ci.low), float(ci.high)], "effective_n": n, "icc": icc,
            "p": float(stats.binomtest(k, n, above, alternative="greater").pvalue)}
