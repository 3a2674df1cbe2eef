"""Two editions of the claim chapters side by side: the same chapters executed on the fast path and on the
float32 reference (the chapters' parameter ``arithmetic``), each leaving its ``verdicts.json``.

The fifty twin pairs of :mod:`memrnn.equivalence` show the fast path's accuracies equivalent to float32; this
comparison asks the question at the level the book reports: does any verdict, or any number a verdict rests
on, depend on which arithmetic trained the networks? The acceptance rule, :data:`RULE`, was fixed here before
any two editions were compared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import store
from .claims import dataset_name
from .display import SUMMARY_FILE

RULE = ("equivalent when every (claim, dataset) verdict is equal and every float32 estimate lies inside the fast "
        "edition's 95% interval")
EDITIONS = ("fast", "float32")  # the order the two editions are given in, by their scopes' arithmetic


@dataclass
class Comparison:
    """Per (claim, dataset) both verdicts and each key statistic of both editions, as (estimate, low, high)
    or None where an edition lacks it, and every violation of :data:`RULE` by name."""
    rows: list = field(default_factory=list)        # {"claim", "dataset", "fast", "float32", "statistics"}
    violations: list = field(default_factory=list)  # one sentence each

    @property
    def equivalent(self) -> bool:
        return not self.violations


def read_edition(folder: Path, arithmetic: str) -> dict:
    """The verdicts of the edition in ``folder`` (its ``verdicts.json``), refusing one that another arithmetic
    produced, or that does not say which produced it, so two editions are never taken for each other."""
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        raise ValueError(f"{path} not found: give a folder holding an edition's {SUMMARY_FILE} (e.g. its book/)")
    verdicts = store.read_json(path, dict)
    if not verdicts:
        raise ValueError(f"{path} holds no verdict: execute the claim chapters there first")
    for claim, record in verdicts.items():
        found = (record.get("scope") or {}).get("arithmetic")
        if not found or "by_dataset" not in record:
            raise ValueError(f"{claim} in {path} does not name its arithmetic or lacks its verdicts per dataset "
                             "(recorded by older code): execute its chapter again")
        if found != arithmetic:
            raise ValueError(f"{path} holds the {found!r} edition ({claim}), not the {arithmetic!r} one: give the "
                             f"editions in the order {' then '.join(EDITIONS)}")
    return verdicts


def compare(fast_folder: Path, float32_folder: Path) -> Comparison:
    """Both editions' verdicts and key statistics per (claim, dataset), judged by :data:`RULE`: equivalent
    when every (claim, dataset) verdict is equal and every float32 estimate lies inside the fast edition's
    95% interval (its ends included). A claim, dataset or statistic that one edition lacks is a violation
    too, as is an estimate or bound that is not a number (NaN): nothing unmeasured counts as agreement. An
    infinite bound (too few networks for an interval) contains every estimate on its side."""
    by_edition = dict(zip(EDITIONS, (read_edition(fast_folder, "fast"), read_edition(float32_folder, "float32"))))
    fast, float32 = by_edition.values()
    for claim in sorted(set(fast) & set(float32)):
        differ = [k for k in set(fast[claim]["scope"]) | set(float32[claim]["scope"])
                  if k != "arithmetic" and fast[claim]["scope"].get(k) != float32[claim]["scope"].get(k)]
        if differ:
            raise ValueError(f"{claim}'s scope differs between the editions in {', '.join(sorted(differ))}: compare "
                             "editions of the same preset and scale")
    result = Comparison()
    for claim in sorted(set(fast) | set(float32)):
        lacking = [name for name, verdicts in by_edition.items() if claim not in verdicts]
        if lacking:
            result.violations.append(f"{claim}: no verdict in the {lacking[0]} edition")
            continue
        datasets = dict.fromkeys([*fast[claim]["by_dataset"], *float32[claim]["by_dataset"]])
        for dataset in datasets:
            result.rows.append(_row(claim, dataset, fast[claim]["by_dataset"].get(dataset),
                                    float32[claim]["by_dataset"].get(dataset), result.violations))
    return result


def _row(claim: str, dataset: str, fast: dict | None, float32: dict | None, violations: list) -> dict:
    where = f"{claim} on {dataset_name(dataset)}"
    row = {"claim": claim, "dataset": dataset, "fast": fast and fast["verdict"],
           "float32": float32 and float32["verdict"], "statistics": []}
    if fast is None or float32 is None:
        violations.append(f"{where}: no verdict in the {'fast' if fast is None else 'float32'} edition")
        return row
    if row["fast"] != row["float32"]:
        violations.append(f"{where}: {row['fast']} on the fast path, {row['float32']} in float32")
    numbers = [{e["name"]: (e["estimate"], e["low"], e["high"]) for e in b["estimates"]} for b in (fast, float32)]
    for name in dict.fromkeys([*numbers[0], *numbers[1]]):
        on_fast, in_float32 = (n.get(name) for n in numbers)
        # a NaN is never inside
        inside = on_fast is not None and in_float32 is not None and on_fast[1] <= in_float32[0] <= on_fast[2]
        row["statistics"].append({"name": name, "fast": on_fast, "float32": in_float32, "inside": inside})
        if on_fast is None or in_float32 is None:
            only = "float32" if on_fast is None else "fast"
            violations.append(f"{where}, {name}: measured only in the {only} edition")
        elif not inside:
            violations.append(f"{where}, {name}: the float32 estimate {in_float32[0]:+.3f} lies outside the fast "
                              f"edition's 95% interval {_interval(on_fast)}")
    return row


def _interval(numbers) -> str:
    return "—" if numbers is None else f"{numbers[0]:+.3f} [{numbers[1]:+.3f}, {numbers[2]:+.3f}]"


def markdown(comparison: Comparison) -> str:
    """The comparison as Markdown for a page of the book: the rule, the decision, one table row per key
    statistic (estimates on the claim's scale, 95% intervals) under its (claim, dataset) verdicts, and
    every violation."""
    lines = [f"**Acceptance rule** (fixed before the editions were compared): {RULE}.", "",
             "**Decision:** " + ("the two editions are equivalent." if comparison.equivalent else
                                 f"the two editions are not equivalent ({len(comparison.violations)} violation"
                                 f"{'s' * (len(comparison.violations) != 1)})."), "",
             "| claim | dataset | verdict (fast) | verdict (float32) | key statistic | fast [95% CI] | float32 [95% CI] "
             "| float32 inside |",
             "|---|---|---|---|---|---|---|---|"]
    for row in comparison.rows:
        head = [row["claim"], dataset_name(row["dataset"]), row["fast"] or "—", row["float32"] or "—"]
        for i, s in enumerate(row["statistics"] or [None]):
            cells = (head if i == 0 else [""] * 4) + (["—"] * 4 if s is None else [
                s["name"], _interval(s["fast"]), _interval(s["float32"]), "yes" if s["inside"] else "**no**"])
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if comparison.violations:
        lines += ["", "Violations:", "", *(f"- {v}" for v in comparison.violations)]
    return "\n".join(lines) + "\n"
