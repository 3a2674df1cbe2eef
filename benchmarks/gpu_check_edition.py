"""Check what a run of benchmarks/gpu_run.sh brought back, once unpacked into FOLDER: every chapter
executed at the preset, a verdict for every claim, the throughput tables, and a grid per dataset.
Exits non-zero naming what is missing.

    python benchmarks/gpu_check_edition.py FOLDER [--preset gpu] [--datasets mnist-5k,fashion-mnist]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memrnn.book import CHAPTERS, missing_from_edition


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--preset", default="gpu")
    parser.add_argument("--datasets", default="mnist-5k,fashion-mnist")
    args = parser.parse_args()
    problems = missing_from_edition(args.folder, args.preset, args.datasets.split(","))
    for problem in problems:
        print(f"missing: {problem}", file=sys.stderr)
    if not problems:
        print(f"complete: {len(CHAPTERS)} chapters at {args.preset}, 6 verdicts, 2 throughput tables, "
              f"campaigns on {args.datasets}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
