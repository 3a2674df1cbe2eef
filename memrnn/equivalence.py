"""May the fast path stand in for float32? Paired twins that differ only in arithmetic.

Each pair is one network trained twice from the same seed, on the same trials, images and pixel noise
(``noise="philox"`` on both paths), once in float32 and once on the fast path, at chapter 08's ``cpu``
scale. Its difference in held-out accuracy measures what bf16 arithmetic changes; two one-sided paired
t-tests (TOST) decide whether the mean difference lies within ``ablation.EQUIVALENCE_MARGIN``. Beside
it, the same comparison with *separate* noise (float32 drawing torch's noise, the fast path Philox's)
shows how much of the spread was the noise. The ``cpu`` preset trains on the fast path only if every
measure is equivalent with shared noise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import bf16, store
from .ablation import EQUIVALENCE_MARGIN, tost
from .campaign import run_grid
from .evidence import long_accuracy, trained_accuracy
from .presets import CHOICES_SCALE
from .stats import mean_ci

ARCH = "gru"
PROTOCOLS = ("decu", "vocu")
BLOCKS = 5  # blocks of CHOICES_SCALE's 5 seeds: 5 x 5 seeds x 2 protocols = 50 pairs, about 80% power at SD 0.07
MEASURES = {"trained": trained_accuracy, "long": long_accuracy}
RESULT = Path(__file__).resolve().parents[1] / "book" / "fast_equivalence.json"


def differences(float32_rows: list[dict], fast_rows: list[dict]) -> dict[str, list[float]]:
    """Per measure, fast minus float32 accuracy per network, paired by (condition, seed)."""
    out = {}
    for name, measure in MEASURES.items():
        a, b = measure(float32_rows), measure(fast_rows)
        out[name] = np.concatenate([b[k] - a[k] for k in sorted(a)]).tolist()
    return out


def summarise(diffs: list[float]) -> dict:
    mean, low, high = mean_ci(diffs)
    return {"n": len(diffs), "mean": mean, "low": low, "high": high, "sd": float(np.std(diffs, ddof=1)),
            "tost_p": tost(diffs), "differences": diffs}


def run_equivalence(out: str | Path = "runs", result: Path = RESULT, blocks: int = BLOCKS,
                    progress: bool = True) -> dict:
    """Train (or reuse) the twins and write the result file: shared noise over ``blocks`` blocks of seeds,
    separate noise over the first block."""
    scale = CHOICES_SCALE["cpu"]

    def grid(first_seed: int, fast: bool, noise: str) -> list[dict]:
        return run_grid("cpu", [ARCH], PROTOCOLS, out=out, progress=progress, fast=fast, noise=noise,
                        first_seed=first_seed, **scale)

    shared = {name: [] for name in MEASURES}
    for first_seed in range(0, blocks * scale["seeds"], scale["seeds"]):
        block = differences(grid(first_seed, False, "philox"), grid(first_seed, True, "philox"))
        for name in MEASURES:
            shared[name] += block[name]
    separate = differences(grid(0, False, "torch"), grid(0, True, "philox"))
    summary = {"arch": ARCH, "protocols": list(PROTOCOLS), **scale, "blocks": blocks, "margin": EQUIVALENCE_MARGIN,
               "machine": bf16.describe(),
               "shared": {name: summarise(d) for name, d in shared.items()},
               "separate": {name: summarise(d) for name, d in separate.items()}}
    summary["equivalent"] = all(s["tost_p"] < 0.05 for s in summary["shared"].values())
    store.write_json(Path(result), summary)
    return summary


def format_equivalence(summary: dict) -> str:
    """Both comparisons as a plain-text table, then the decision."""
    lines = [f"{'noise':<10}{'measure':<10}{'pairs':>6}{'mean':>9}{'95% CI':>20}{'SD':>8}{'TOST p':>9}"]
    for noise in ("shared", "separate"):
        for name, s in summary[noise].items():
            interval = f"[{s['low']:+.4f}, {s['high']:+.4f}]"
            lines.append(f"{noise:<10}{name:<10}{s['n']:>6}{s['mean']:>+9.4f}{interval:>20}{s['sd']:>8.4f}"
                         f"{s['tost_p']:>9.3f}")
    verdict = "equivalent" if summary["equivalent"] else "not shown equivalent"
    return "\n".join(lines + [f"fast path with shared noise: {verdict} within ±{summary['margin']} ({summary['machine']})"])
