"""The fast path's C kernels (``noise.c``, ``cells.c``), compiled once per process at first use.

Why compile at run time: the kernels are a few hundred lines that gcc vectorises for the machine it
runs on (``-march=native``; ``-ffast-math`` lets it call glibc's vector ``exp``, ``log`` and ``cos``),
which a prebuilt wheel could only do for one vector width; compiling takes a fraction of a second and
needs only a C compiler (``$CC``, else ``cc``; Colab has gcc). Without one the fast path says so, and
the float32 path runs as before. Results are bit-identical run to run on one machine, and may differ
in the last bits of a float on a CPU with another vector width. ``$MEMRNN_CFLAGS`` adds flags after
these, e.g. ``-mno-avx512f`` to build the kernels a CPU without AVX-512 runs (their portable path).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch  # noqa: F401  imported first, so that kernels built with OpenMP bind to torch's libgomp

FLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC", "-shared"]
# OpenMP through the libgomp torch has loaded (one soname, one runtime, one set of threads); a compiler
# without OpenMP (Apple's clang) builds the same code for one thread
THREADED = ["-fopenmp"]


@lru_cache(maxsize=None)
def library(source: str, **defines: str) -> ctypes.CDLL:
    """The compiled ``memrnn/<source>`` with these ``-D`` macro definitions."""
    path = Path(__file__).with_name(source)
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"the CPU fast path compiles {path.name} with a C compiler, and {compiler!r} was not "
                           "found: install one (e.g. gcc), name it in $CC, or use fast=False")
    options = [f"-D{name}={value}" for name, value in defines.items()] + os.environ.get("MEMRNN_CFLAGS", "").split()
    with tempfile.TemporaryDirectory(prefix="memrnn-native-") as folder:
        built = Path(folder) / f"{path.stem}.so"
        for threaded in (THREADED, []):
            done = subprocess.run([compiler, *FLAGS, *threaded, *options, str(path), "-o", str(built), "-lm"],
                                  capture_output=True, text=True)
            if not done.returncode:
                return ctypes.CDLL(str(built))  # mapped into the process: the file may go
        raise RuntimeError(f"compiling {path} with {compiler} failed:\n{done.stderr}")
