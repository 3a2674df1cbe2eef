"""Binder's environment is pinned: conda's PyTorch to one version, every pip package to one version
that pyproject allows, so a Binder build today installs what a build next year does."""
import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements-binder.txt"
tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lock() -> dict[str, Requirement]:
    pins = {}
    for number, line in enumerate(LOCK.read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{LOCK.name}:{number}: {name} is pinned twice"
        pins[name] = requirement
    return pins


def _version(requirement: Requirement) -> Version:
    (spec,) = requirement.specifier
    return Version(spec.version)


def test_every_pip_package_is_pinned_to_one_version():
    pins = _lock()
    assert len(pins) > 50  # the whole dependency tree, not only memrnn's direct dependencies
    for name, requirement in pins.items():
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, \
            f"{requirement}: pin it to one version with =="
        assert requirement.marker is None and not requirement.extras and requirement.url is None, str(requirement)


def test_torch_comes_from_conda_not_from_the_pins():
    names = set(_lock())
    assert "torch" not in names
    assert not {n for n in names if n.startswith(("nvidia-", "cuda-")) or n == "triton"}


def test_the_pins_satisfy_pyproject():
    pins = _lock()
    for text in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["book"]:
        wanted = Requirement(text)
        name = canonicalize_name(wanted.name)
        if name == "torch":
            continue
        assert name in pins, f"{wanted} (pyproject) is not in {LOCK.name}"
        assert wanted.specifier.contains(_version(pins[name]), prereleases=True), \
            f"{LOCK.name} pins {pins[name]}, outside pyproject's {wanted}"
        for extra in wanted.extras:  # dask[distributed]: the extra's packages are pinned too
            assert canonicalize_name(extra) in pins, f"{wanted}: {extra} is not in {LOCK.name}"


def test_conda_pins_pytorch_within_pyproject_and_postbuild_installs_the_pins():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pinned = [d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("pytorch-cpu")]
    assert len(pinned) == 1 and re.fullmatch(r"pytorch-cpu=\d+\.\d+\.\d+", pinned[0]), pinned
    torch = next(Requirement(r) for r in PROJECT["dependencies"] if Requirement(r).name == "torch")
    assert torch.specifier.contains(pinned[0].split("=")[1])
    python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert Requirement(f"python{PROJECT['requires-python']}").specifier.contains(python.split("=")[1] + ".0")
    post_build = (ROOT / "postBuild").read_text()
    assert f"pip install --no-cache-dir -r {LOCK.name}" in post_build and "--no-deps -e ." in post_build
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists(), \
        "repo2docker would read a binder/ folder instead of environment.yml and postBuild"
