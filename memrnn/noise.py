"""Gaussian pixel noise for the CPU fast path, from a counter-based generator.

Why: a training batch of the ``cpu`` shape holds 5 million noise pixels, and torch's CPU ``normal_``
draws them from one mt19937 stream per generator, which no thread can share. Philox4x32-10
(``noise.c``) computes any block of its stream independently of the others, so a fill is vectorised
(16 lanes, glibc's vector ``logf``/``cosf``), may write bf16 straight into the rows of a bigger matrix,
and splits over threads without changing a value: twice torch's rate here, on one thread or two
(``benchmarks/noise_throughput.py``). A stream is named by a 64-bit key that the caller draws from its
torch generator, so generator states (checkpointed with the run) still fix every draw. Compiled at
first use (``memrnn.native``).
"""
from __future__ import annotations

import ctypes
from functools import lru_cache

import torch

from . import native


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    library = native.library("noise.c")
    library.memrnn_normal.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint64,
                                      ctypes.c_uint64, ctypes.c_int64, ctypes.c_int64, ctypes.c_float, ctypes.c_float]
    library.memrnn_philox.argtypes = [ctypes.c_void_p] * 3
    return library


def key(generator: torch.Generator) -> int:
    """A stream key drawn from a torch generator (which advances by one draw)."""
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, device=generator.device))


def normal_(out: torch.Tensor, key: int, mean: float = 0.0, std: float = 1.0, first: int = 0,
            threads: int = 1) -> torch.Tensor:
    """Fill ``out`` (float32 or bfloat16 on the CPU) with normals ``first``, ``first + 1``, ... of stream
    ``key``, times ``std`` plus ``mean``, in row-major order (in bfloat16: those float32 values rounded
    to nearest). ``out`` may be a view with gaps between its rows, e.g. some columns of a matrix, as
    long as each row is contiguous; ``threads`` > 1 splits the fill over ``native.pool()``."""
    if out.dtype not in (torch.float32, torch.bfloat16) or out.device.type != "cpu":
        raise ValueError(f"normal_ fills a float32 or bfloat16 CPU tensor, got {out.dtype} on {out.device}")
    try:
        rows = out.view(-1, out.shape[-1]) if out.dim() else out.view(1, 1)
    except RuntimeError:
        rows = None
    if rows is None or (rows.stride(1) != 1 and rows.shape[1] > 1):
        raise ValueError(f"normal_ fills rows that are contiguous and evenly spaced; got strides {out.stride()}")
    if first < 0:
        raise ValueError(f"first={first}: a fill starts at a stream position >= 0")
    if not 0 <= key < 2**64:
        raise ValueError(f"key={key}: a stream key is an unsigned 64-bit integer")
    n, (length, stride) = rows.numel(), (rows.shape[1], rows.stride(0))
    kernel, bf16 = _library().memrnn_normal, int(out.dtype == torch.bfloat16)
    bounds = [n * part // threads for part in range(threads + 1)]

    def fill(part):
        kernel(rows.data_ptr(), bf16, length, stride, key, first, bounds[part], bounds[part + 1], mean, std)

    if threads == 1:
        fill(0)
    else:
        list(native.pool().map(fill, range(threads)))
    return out


def philox(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """The raw Philox4x32-10 block: four 32-bit words of (counter words, key words)."""
    words = [(ctypes.c_uint32 * n)(*v) for n, v in ((4, (0,) * 4), (4, counter), (2, key))]
    _library().memrnn_philox(*words)
    return tuple(words[0])
