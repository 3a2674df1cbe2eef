"""Write Binder's lock file: every package that ``memrnn[book]`` needs, pinned to the version installed
here, torch excepted (Binder takes PyTorch's CPU build from conda, see environment.yml).

    python .ci/lock_binder.py > requirements-binder.txt

(Not in a ``binder/`` folder: repo2docker would then ignore environment.yml and postBuild.)

Run it in an environment where ``pip install -e ".[book]"`` worked and the book executes; the
dependencies are followed through the installed packages' metadata, with markers evaluated here.
"""
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXCLUDED = {"torch"}  # and so everything only torch needs (CUDA libraries, triton, sympy, ...)


def top_level() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["book"]]


def wanted(requirement: Requirement, extras: set[str]) -> bool:
    """Whether ``requirement`` applies here, for a parent installed with ``extras``."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def pins() -> dict[str, str]:
    found, todo = {}, [(r, set()) for r in top_level()]
    while todo:
        requirement, parent_extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in EXCLUDED or not wanted(requirement, parent_extras):
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            sys.exit(f"{requirement.name} is needed ({requirement}) but not installed here: install .[book] first")
        key = (name, frozenset(requirement.extras))
        if key in found:
            continue
        found[key] = dist.version
        todo += [(Requirement(r), set(requirement.extras)) for r in dist.requires or []]
    return {name: version for (name, _), version in found.items()}


if __name__ == "__main__":
    print("# Binder's pip packages, pinned (written by .ci/lock_binder.py; torch comes from conda)")
    for name, version in sorted(pins().items()):
        print(f"{name}=={version}")
