"""Check what a run of benchmarks/gpu_run.sh brought back, once unpacked into FOLDER: every chapter
executed at the preset, a verdict for every claim, the throughput tables, and a grid per dataset.
Exits non-zero naming what is missing.

    python benchmarks/gpu_check_edition.py FOLDER [--preset gpu] [--datasets mnist-5k,fashion-mnist]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from memrnn.book import CHAPTERS


def missing(folder: Path, preset: str, datasets: list[str]) -> list[str]:
    problems = []
    for name in CHAPTERS:
        notebook = folder / "book" / f"{name}.ipynb"
        if not notebook.exists():
            problems.append(f"chapter {name} not executed")
        elif json.loads(notebook.read_text())["metadata"]["memrnn"]["preset"] != preset:
            problems.append(f"chapter {name} executed at another preset")
    for claim in ("C1", "C2", "C3", "C4", "C5", "C6"):
        if not (folder / "runs" / "verdicts" / f"{claim}.json").exists():
            problems.append(f"no verdict for {claim}")
    for arch in ("gru", "lstm"):
        table = folder / "runs" / "gpu-logs" / f"throughput-{arch}.log"
        if not table.exists() or not any(line.split()[:1] == ["1"] for line in table.read_text().splitlines()):
            problems.append(f"no throughput row for {arch.upper()}")
    for dataset in datasets:
        if not (folder / "runs" / f"campaign-{preset}-{dataset}.json").exists():
            problems.append(f"no campaign on {dataset}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--preset", default="gpu")
    parser.add_argument("--datasets", default="mnist-5k,fashion-mnist")
    args = parser.parse_args()
    problems = missing(args.folder, args.preset, args.datasets.split(","))
    for problem in problems:
        print(f"missing: {problem}", file=sys.stderr)
    if not problems:
        print(f"complete: {len(CHAPTERS)} chapters at {args.preset}, 6 verdicts, 2 throughput tables, "
              f"campaigns on {args.datasets}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
