"""The ``memrnn`` command line."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import signal
import sys
import time
from pathlib import Path

from .archive import CHECKPOINTS, MAX_BYTES, SUFFIXES, check_sha256
from .campaign import DEFAULT_DELAYS
from .book import CHAPTERS
from .data import DATASETS
from .models import ARCHS
from .evaluate import MAX_PROBE_SEED
from .presets import (CHOICES, CNN_DATASETS, CNN_FORM, DEVICES, MAX_ITERATIONS, MAX_STEPS, MODEL_FORM, PRESETS,
                      make_config, parse_override)
from .protocols import PROTOCOLS
from .regularize import MODES
from .slowpoints import CENTROID_PROTOCOLS, METHODS, METRICS


MAX_DELAY = 1_000_000


def _integer(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high], the message naming what was given and what is allowed."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            allowed = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: expected {allowed}")
        return value
    return parse


def _number(low: float):
    """An argparse type: a finite number >= low."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= low):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: expected a finite number >= {low:g}")
        return value
    return parse


def _delays(text: str) -> list[int]:
    try:
        delays = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"delays must be comma-separated integers, got {text!r}") from None
    if not delays or min(delays) < 1 or max(delays) > MAX_DELAY:
        raise argparse.ArgumentTypeError(f"delays must be between 1 and {MAX_DELAY}, got {text!r}")
    return delays


def _override(text: str) -> tuple[str, object]:
    try:
        return parse_override(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _out_dir(text: str) -> Path:
    path = Path(text)
    if _exists(path) and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a directory: give a directory for results")
    return path


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a path the system cannot even look up (too long, say) is an argument error."""
    try:
        return path.exists()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{str(path)[:60]!r}...: {e.strerror}") from None


def _names(allowed):
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(allowed)}")
        return names
    return parse


def _parameter(text: str) -> tuple[str, object]:
    """'key=value' for a chapter parameter, the value as text: ``book.run`` converts it to the type the
    chapter's parameters cell declares."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"bad parameter {text!r}: expected key=value")
    return key, value


class _Parser(argparse.ArgumentParser):
    """Usage errors in the one-line form of every other error, pointing to --help for the usage."""

    def error(self, message):
        command = self.prog.removeprefix("memrnn").strip()
        self.exit(2, f"memrnn: error: {command + ': ' if command else ''}{message} (see `{self.prog} --help`)\n")


def _grid_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--preset", choices=PRESETS, help="default: smoke")
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--archs", type=_names(ARCHS), default=["gru", "lstm"])
    p.add_argument("--protocols", type=_names(PROTOCOLS), default=list(PROTOCOLS))
    p.add_argument("--seeds", type=_integer(1))
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_override)
    p.add_argument("--out", default="runs", type=_out_dir)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a Dask scheduler to run the conditions on, or 'sync' for in-process (default: "
                        "$MEMRNN_SCHEDULER, else a local cluster of one worker per CPU core or GPU)")
    return p


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="memrnn", description=__doc__.strip())
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of a failure")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("train", help="train an ensemble (one network per seed) and write its run directory")
    p.add_argument("--preset", choices=PRESETS, help="default: smoke")
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--arch", choices=ARCHS)
    p.add_argument("--protocol", choices=PROTOCOLS)
    p.add_argument("--seeds", type=_integer(1), help="number of networks (seeds first_seed .. first_seed+N-1)")
    p.add_argument("--steps", type=_integer(1))
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_override,
                   help="override any config field, e.g. --set lr=1e-3 (repeatable)")
    p.add_argument("--out", default="runs", type=_out_dir, help="parent directory of run directories (default: runs)")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and results")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = commands.add_parser("evaluate", help="accuracy versus delay on held-out images for a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--delays", type=_delays, default=list(DEFAULT_DELAYS))
    p.add_argument("--trials", type=_integer(1), help="held-out probe trials (default: the run's eval_trials)")
    p.add_argument("--seed", type=_integer(0, MAX_PROBE_SEED), default=0, help="seed of the probe images and noise")
    p.add_argument("--device", choices=DEVICES)

    _grid_arguments(commands.add_parser(
        "campaign", help="grid, slow points, formation and every fine-tuning mode, resumable"))

    p = commands.add_parser("slowpoints", help="find each member's slow point per class (from class centroids)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--method", choices=METHODS, help="the search (default: the run's, i.e. the reference's Adam)")
    p.add_argument("--centroids", choices=CENTROID_PROTOCOLS, help="start points (default: the run's)")
    p.add_argument("--tol", type=_number(0), default=1e-12, help="stop a point when q <= tol")
    p.add_argument("--max-iter", type=_integer(1, MAX_ITERATIONS))
    p.add_argument("--metric", choices=METRICS, help="LSTM speed on (h, c) or (h, tanh c) (default: the run's)")
    p.add_argument("--step", type=_integer(1), help="checkpoint to analyse (default: the final one of a finished run)")
    p.add_argument("--device", choices=DEVICES)

    p = commands.add_parser("formation", help="trace the final slow points back through the training checkpoints")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--max-iter", type=_integer(1, MAX_ITERATIONS), default=50)
    p.add_argument("--device", choices=DEVICES)

    p = commands.add_parser("correlate", help="slow-point speed vs long-delay accuracy over runs")
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--min-delay", type=_integer(1), default=100, help="long delays: evaluated delays >= this")
    p.add_argument("--out", type=_json_file, help="also write rows and table as JSON here")

    p = commands.add_parser("regularize", help="fine-tune a trained run with a speed penalty and compare modes")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--mode", type=_names(MODES), default=list(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--lam", type=_number(0), help="penalty strength (default: 1e-3, CIFAR-10 1e-2)")
    p.add_argument("--steps", type=_integer(1, MAX_STEPS), help="fine-tuning steps (default: the run's finetune_fraction of its training)")
    p.add_argument("--relocate", type=_integer(0), default=0, help="re-find the anchors every K steps (0: fixed)")
    p.add_argument("--delays", type=_delays, help="evaluation delays (default: the parent's)")
    p.add_argument("--min-delay", type=_integer(1), default=100, help="long delays: evaluated delays >= this")
    p.add_argument("--quiet", action="store_true")

    p = _grid_arguments(commands.add_parser("grid", help="train and evaluate architectures x protocols at a preset"))
    p.add_argument("--delays", type=_delays, default=list(DEFAULT_DELAYS))

    p = commands.add_parser("curve", help="train the learning curve whose rule fixes the cpu preset's training "
                                          "length, and write its result file (memrnn.curve)")
    p.add_argument("--out", default="runs", type=_out_dir, help="parent directory of run directories (default: runs)")
    p.add_argument("--result", type=_json_file, help="result file (default: book/learning_curve.json)")
    p.add_argument("--quiet", action="store_true")

    p = commands.add_parser("equivalence", help="train float32 and fast-path twins with shared noise and test their "
                                                "equivalence, the test the cpu preset's path rests on (memrnn.equivalence)")
    p.add_argument("--out", default="runs", type=_out_dir, help="parent directory of run directories (default: runs)")
    p.add_argument("--result", type=_json_file, help="result file (default: book/fast_equivalence.json)")
    p.add_argument("--blocks", type=_integer(1, 40), default=None,
                   help="blocks of 5 seeds x 2 protocols to pair (default: 5, i.e. 50 pairs)")
    p.add_argument("--quiet", action="store_true")

    p = commands.add_parser("book", help="execute the book's chapters with papermill and/or build its HTML")
    book = p.add_subparsers(dest="book_command", required=True, metavar="ACTION")
    q = book.add_parser("run", help="execute chapters at a preset, then build the HTML")
    q.add_argument("--preset", choices=PRESETS, help="default: cpu")
    q.add_argument("--chapters", type=_names(CHAPTERS), help=f"comma-separated, from {', '.join(CHAPTERS)}")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_parameter,
                   help="a chapter parameter, e.g. --set archs=gru (repeatable)")
    q.add_argument("--no-build", action="store_true", help="execute only")
    q.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: .)")
    q.add_argument("--started-at", type=_number(0), metavar="EPOCH_SECONDS",
                   help="when the timing of an execution of every chapter from an empty runs folder begins "
                        "(`make book` passes when make started; default: now)")
    q = book.add_parser("build", help="render the HTML from the stored outputs, executing nothing")
    q.add_argument("--root", type=Path, default=Path("."))
    q = book.add_parser("compare", help="compare the verdicts of the fast and the float32 edition of the claim "
                                        "chapters (memrnn.editions); exit status 1 when they are not equivalent")
    q.add_argument("fast", type=Path, metavar="FAST_DIR", help="folder holding the fast edition's verdicts.json")
    q.add_argument("float32", type=Path, metavar="FLOAT32_DIR", help="folder holding the float32 edition's verdicts.json")

    p = commands.add_parser("runs", help="pack trained runs into one archive, or fetch and unpack one")
    runs = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    q = runs.add_parser("pack", help="write runs (default: every finished one) to a tar.gz and print its SHA-256")
    q.add_argument("out", type=_archive_file, metavar="OUT.tar.gz")
    q.add_argument("run_names", nargs="*", metavar="RUN", help="run directory names in --runs (default: every finished run)")
    q.add_argument("--runs", default="runs", type=_out_dir, help="the runs folder (default: runs)")
    q.add_argument("--checkpoints", choices=CHECKPOINTS, default="final",
                   help="final (default; cached formation traces stay usable) or all")
    q = runs.add_parser("fetch", help="download an archive, check its SHA-256 and add its runs to --runs")
    q.add_argument("url")
    q.add_argument("--sha256", required=True, type=_sha256, help="the archive's SHA-256 (64 hexadecimal digits)")
    q.add_argument("--runs", default="runs", type=_out_dir, help="the runs folder (default: runs)")
    q.add_argument("--max-bytes", type=_size, default=MAX_BYTES,
                   help=f"download at most this much (default {MAX_BYTES // 2**30} GiB; suffixes K, M, G, T)")
    q.add_argument("--max-unpacked", type=_size,
                   help="unpack at most this much (default: a few times the archive's size)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")

    p = commands.add_parser("config", help="print the configuration a preset resolves to, with each field's "
                                           "allowed values where they are a fixed set")
    p.add_argument("--preset", choices=PRESETS, help="default: smoke")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_override)
    p.add_argument("--json", action="store_true", help="the values alone, as JSON")
    return parser


def _archive_file(text: str) -> Path:
    path = Path(text)
    if not path.name.endswith(SUFFIXES):
        raise argparse.ArgumentTypeError(f"{text!r} is not a tar.gz name: give a file name ending in "
                                         f"{' or '.join(SUFFIXES)}")
    if _exists(path) and path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory: give a file name for the archive")
    return path


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _size(text: str) -> int:
    """An argparse type: a positive number of bytes, with an optional binary suffix K, M, G or T."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    value = int(found.group(1)) * _UNITS[found.group(2).upper()] if found else 0
    if not 0 < value <= 2**60:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: expected a positive size in bytes, "
                                         "like 500M or 4G")
    return value


def _sha256(text: str) -> str:
    try:
        return check_sha256(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _json_file(text: str) -> Path:
    path = Path(text)
    if _exists(path) and path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory: give a file name for the JSON output")
    return path


def _overrides(args, **flags) -> tuple[str, dict]:
    """The preset and config overrides from the flags and ``--set`` together; a field given both ways
    with different values is an error."""
    flags = {"preset": args.preset, **flags}
    values = {k: v for k, v in flags.items() if v is not None}
    for key, value in args.set:
        if key in values and values[key] != value:
            option = "--set" if key not in flags else f"--{key}"
            raise ValueError(f"{key} is given twice with different values ({values[key]!r} by {option}, "
                             f"{value!r} by --set {key}=...): give it once")
        values[key] = value
    return values.pop("preset", "smoke"), values


def _grid_overrides(args) -> tuple[str, dict]:
    for key, _ in args.set:
        if key in ("arch", "protocol"):
            raise ValueError(f"--set {key}=... does not apply to a grid: use --{key}s")
    return _overrides(args, dataset=args.dataset, seeds=args.seeds, device=args.device)


def _describe(error: Exception) -> str:
    """One line saying what failed and on what, for the ``memrnn: error:`` message."""
    if isinstance(error, OSError) and error.filename:
        text = f"{error.strerror or error}: {error.filename} (check the path, its permissions and free space)"
    elif isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    else:
        text = str(error) or type(error).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with the RUNs of ``runs pack`` allowed after its options (argparse fills a
    positional from one stretch of the command line only and leaves later ones over)."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and getattr(args, "runs_command", None) == "pack" and not any(r.startswith("-") for r in rest):
        args.run_names += rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def format_config(config) -> str:
    """One line per field with its value and, for a field with a fixed set of values, every value allowed
    (a model-form field's first is the reference's)."""
    values = vars(config)
    width = max(map(len, values))
    lines = []
    for field, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        allowed = [json.dumps(v) for v in (False, True)] if isinstance(value, bool) else list(CHOICES.get(field, ()))
        if field in MODEL_FORM or field in CNN_FORM:
            allowed[0] += " (the reference's)"
        if field in CNN_FORM:
            allowed[-1] += f"; applies to {', '.join(CNN_DATASETS)} only"
        lines.append(f"{field:<{width}}  {text:<16}" + (f"  one of: {', '.join(allowed)}" if allowed else ""))
    return "\n".join(line.rstrip() for line in lines)


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM ends the command through every clean-up, as Ctrl-C does (a book run's kernel, its Dask
    cluster and their temporary files), instead of at once."""
    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        with _sigterm_as_exit():
            return _run(args)
    except KeyboardInterrupt:
        print(f"memrnn: {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as e:  # one error path: a clear line and exit 2; the traceback only with --debug
        if args.debug:
            raise
        print(f"memrnn: error: {args.command}: {_describe(e)}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "config":
        preset, values = _overrides(args)
        config = make_config(preset, **values)
        print(json.dumps(vars(config), indent=1) if args.json else format_config(config))
    elif args.command == "train":
        from .train import train

        preset, values = _overrides(args, dataset=args.dataset, arch=args.arch, protocol=args.protocol,
                                    seeds=args.seeds, steps=args.steps, device=args.device)
        config = make_config(preset, **values)
        run_dir = train(config, args.out, resume=not args.fresh, progress=not args.quiet)
        from .store import read_summary

        summary = read_summary(run_dir)["train"]
        accuracy = ", ".join(f"{a:.3f}" for a in summary["trained_delay_accuracy"])
        print(f"{run_dir}\ntrained-delay accuracy per member: {accuracy}")
    elif args.command == "evaluate":
        from .evaluate import evaluate_run

        section = evaluate_run(args.run_dir, args.delays, args.trials, args.seed, args.device)
        print(f"{args.run_dir}: accuracy (mean over members) by delay")
        for j, d in enumerate(section["delays"]):
            mean = sum(member[j] for member in section["overall"]) / len(section["overall"])
            print(f"  delay {d:>6}: {mean:.3f}")
    elif args.command == "slowpoints":
        from .slowpoints import analyse_run

        sp = analyse_run(args.run_dir, args.step, args.method, args.centroids, args.metric, args.tol, args.max_iter,
                         device=args.device)
        print(f"{args.run_dir}: slow-point speed per member x class (* = decodes another class, ! = outside region)")
        for m, seed in enumerate(sp["member_seeds"]):
            cells = [f"{v:.1e}" + ("*" if sp["decoded_class"][m][c] != c else "") + ("!" if not sp["in_region"][m][c] else "")
                     for c, v in enumerate(sp["speed"][m])]
            print(f"  seed {seed}: " + " ".join(cells))
    elif args.command == "formation":
        from .formation import trace_run

        result = trace_run(args.run_dir, args.max_iter, device=args.device)
        print(f"{args.run_dir}: step at which each class's final slow point appears (per member)")
        for m, seed in enumerate(result["member_seeds"]):
            print(f"  seed {seed}: " + " ".join(str(s) for s in result["appears_at"][m]))
        for split in result["splits"]:
            print(f"  member {split['member']}: classes {split['classes']} split at step {split['step']}")
    elif args.command == "correlate":
        from .stats import correlation_table, format_correlations, speed_memory_rows

        rows = speed_memory_rows(args.run_dirs, args.min_delay)
        table = correlation_table(rows)
        print(format_correlations(table))
        if args.out:
            from .store import write_json

            write_json(args.out, {"min_delay": args.min_delay, "table": table, "rows": rows})
    elif args.command == "regularize":
        from .evaluate import evaluate_run
        from .regularize import REGULARIZATION_FILE, compare, finetune
        from .store import read_config, read_summary, run_file, run_lock, trained_step, write_json
        from .train import check_resources

        trained_step(args.run_dir)
        config = read_config(args.run_dir)
        check_resources(config, args.run_dir.parent, args.steps or config.finetune_steps)  # before anything is written
        parent = read_summary(args.run_dir)
        delays = args.delays or parent.get("extrapolation", {}).get("delays") or list(DEFAULT_DELAYS)
        evaluate_run(args.run_dir, delays)
        children = []
        for mode in args.mode:
            child = finetune(args.run_dir, mode, args.lam, args.steps, args.relocate, progress=not args.quiet)
            evaluate_run(child, delays)
            children.append(child)
        rows = compare(args.run_dir, children, args.min_delay)
        with run_lock(args.run_dir):
            write_json(run_file(args.run_dir, REGULARIZATION_FILE), {"min_delay": args.min_delay, "modes": rows})
        print(f"{'mode':<12}{'long-delay acc before -> after (change, 95% CI)':<50}{'trained-delay acc before -> after'}")
        for row in rows:
            lo, tr = row["long"], row["trained"]
            print(f"{row['mode']:<12}{lo['before']:.3f} -> {lo['after']:.3f} ({lo['change']:+.3f}, "
                  f"[{lo['ci95'][0]:+.3f}, {lo['ci95'][1]:+.3f}])".ljust(62) + f"{tr['before']:.3f} -> {tr['after']:.3f}")
    elif args.command == "book" and args.book_command == "compare":
        from . import editions

        comparison = editions.compare(args.fast, args.float32)
        print(editions.markdown(comparison), end="")
        return 0 if comparison.equivalent else 1
    elif args.command == "book":
        from .book import CHAPTERS, TIMINGS_FILE, build, record_fresh_time, run, run_names, runs_folder

        if args.book_command == "run":
            preset, parameters = _overrides(args)  # the preset given by --preset and --set alike: an error
            preset = preset if args.preset or "preset" in dict(args.set) else "cpu"
            started = args.started_at or time.time()
            # the book as `make book` executes it from a fresh clone: its time is the estimate for the next one
            fresh = (not args.set and set(args.chapters or CHAPTERS) == set(CHAPTERS)
                     and not run_names(runs_folder(args.root)))
            run(args.root, preset, args.chapters, parameters)
            if args.no_build:
                return 0
        print(f"HTML: {build(args.root)}/index.html")
        if args.book_command == "run" and fresh:
            record_fresh_time(args.root / "book" / TIMINGS_FILE, preset, time.time() - started)
    elif args.command == "campaign":
        from .campaign import format_table, run_campaign
        from .stats import format_correlations

        preset, values = _grid_overrides(args)
        result = run_campaign(preset, args.archs, args.protocols, out=args.out, progress=not args.quiet,
                              scheduler=args.scheduler, **values)
        print(format_table(result["grid"]))
        print(format_correlations(result["correlations"]))
        for run, rows in result["regularization"].items():
            print(run + ": " + ", ".join(f"{r['mode']} {r['long']['change']:+.3f}" for r in rows)
                  + " (change in long-delay accuracy)")
    elif args.command == "grid":
        from .campaign import format_table, run_grid

        preset, values = _grid_overrides(args)
        rows = run_grid(preset, args.archs, args.protocols, args.delays, args.out, not args.quiet,
                        scheduler=args.scheduler, **values)
        print(format_table(rows))
    elif args.command == "curve":
        from .curve import RESULT, format_curve, run_curve, write_page

        summary = run_curve(args.out, args.result or RESULT, not args.quiet)
        if args.result is None:
            write_page(summary)
        print(format_curve(summary))
    elif args.command == "equivalence":
        from .equivalence import BLOCKS, RESULT, format_equivalence, run_equivalence

        summary = run_equivalence(args.out, args.result or RESULT, args.blocks or BLOCKS, not args.quiet)
        print(format_equivalence(summary))
    elif args.command == "runs":
        from .archive import fetch, pack

        if args.runs_command == "pack":
            print(f"{pack(args.runs, args.out, args.run_names or None, args.checkpoints)}  {args.out}")
        else:
            added = fetch(args.url, args.sha256, args.runs, progress=not args.quiet, max_bytes=args.max_bytes,
                          max_unpacked=args.max_unpacked)
            print("\n".join(str(args.runs / name) for name in added) if added
                  else f"nothing added: every run of the archive is already in {args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
