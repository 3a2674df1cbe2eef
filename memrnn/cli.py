"""The ``memrnn`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .campaign import DEFAULT_DELAYS
from .data import DATASETS
from .models import ARCHS
from .presets import DEVICES, PRESETS, make_config, parse_override
from .protocols import PROTOCOLS


def _delays(text: str) -> list[int]:
    try:
        delays = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"delays must be comma-separated integers, got {text!r}") from None
    if not delays or min(delays) < 1:
        raise argparse.ArgumentTypeError(f"delays must be positive, got {text!r}")
    return delays


def _names(allowed):
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(allowed)}")
        return names
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memrnn", description=__doc__.strip())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("train", help="train an ensemble (one network per seed) and write its run directory")
    p.add_argument("--preset", default="smoke", choices=PRESETS)
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--arch", choices=ARCHS)
    p.add_argument("--protocol", choices=PROTOCOLS)
    p.add_argument("--seeds", type=int, help="number of networks (seeds first_seed .. first_seed+N-1)")
    p.add_argument("--steps", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=parse_override,
                   help="override any config field, e.g. --set lr=1e-3 (repeatable)")
    p.add_argument("--out", default="runs", help="parent directory of run directories (default: runs)")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and results")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = commands.add_parser("evaluate", help="accuracy versus delay on held-out images for a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--delays", type=_delays, default=list(DEFAULT_DELAYS))
    p.add_argument("--trials", type=int, help="held-out probe trials (default: the run's eval_trials)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe images and noise")
    p.add_argument("--device", choices=DEVICES)

    p = commands.add_parser("grid", help="train and evaluate architectures x protocols at a preset")
    p.add_argument("--preset", default="smoke", choices=PRESETS)
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--archs", type=_names(ARCHS), default=["gru", "lstm"])
    p.add_argument("--protocols", type=_names(PROTOCOLS), default=list(PROTOCOLS))
    p.add_argument("--seeds", type=int)
    p.add_argument("--delays", type=_delays, default=list(DEFAULT_DELAYS))
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=parse_override)
    p.add_argument("--out", default="runs")
    p.add_argument("--quiet", action="store_true")

    p = commands.add_parser("config", help="print the configuration a preset resolves to")
    p.add_argument("--preset", default="smoke", choices=PRESETS)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=parse_override)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"memrnn {args.command}: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "config":
        print(json.dumps(vars(make_config(args.preset, **dict(args.set))), indent=1))
    elif args.command == "train":
        from .train import train

        config = make_config(args.preset, dataset=args.dataset, arch=args.arch, protocol=args.protocol,
                             seeds=args.seeds, steps=args.steps, device=args.device, **dict(args.set))
        run_dir = train(config, args.out, resume=not args.fresh, progress=not args.quiet)
        summary = json.loads((run_dir / "summary.json").read_text())["train"]
        accuracy = ", ".join(f"{a:.3f}" for a in summary["trained_delay_accuracy"])
        print(f"{run_dir}\ntrained-delay accuracy per member: {accuracy}")
    elif args.command == "evaluate":
        from .evaluate import evaluate_run

        section = evaluate_run(args.run_dir, args.delays, args.trials, args.seed, args.device)
        print(f"{args.run_dir}: accuracy (mean over members) by delay")
        for j, d in enumerate(section["delays"]):
            mean = sum(member[j] for member in section["overall"]) / len(section["overall"])
            print(f"  delay {d:>6}: {mean:.3f}")
    elif args.command == "grid":
        from .campaign import format_table, run_grid

        rows = run_grid(args.preset, args.archs, args.protocols, args.delays, args.out, not args.quiet,
                        dataset=args.dataset, seeds=args.seeds, device=args.device, **dict(args.set))
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
