"""Gaussian pixel noise for the CPU fast path, from a counter-based generator.

Why: a training batch of the ``cpu`` shape holds 5 million noise pixels, and torch's CPU ``normal_``
draws them from one mt19937 stream per generator, which no thread can share. Philox4x32-10
(``noise.c``) computes any block of its stream independently of the others, so a fill is vectorised
(16 lanes, glibc's vector ``logf``/``cosf``), may write bf16 straight into the rows of a bigger matrix,
and splits over torch's OpenMP threads without changing a value: 3.7x torch's rate here in float32
and 4.2x in bf16, on two cores (``benchmarks/noise_throughput.py``). A stream is named by a 64-bit
key that the caller draws from its torch generator, so generator states (checkpointed with the run)
still fix every draw. Compiled at first use (``memrnn.native``).
"""
from __future__ import annotations

import ctypes
from collections.abc import Sequence
from functools import lru_cache

import torch

from . import native


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    library = native.library("noise.c")
    library.memrnn_normal_streams.argtypes = [ctypes.c_void_p, ctypes.c_int, *[ctypes.c_int64] * 4, ctypes.c_void_p,
                                              ctypes.c_uint64, ctypes.c_int64, ctypes.c_int64, ctypes.c_float,
                                              ctypes.c_float]
    library.memrnn_philox.argtypes = [ctypes.c_void_p] * 3
    return library


def key(generator: torch.Generator) -> int:
    """A stream key drawn from a torch generator (which advances by one draw)."""
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, device=generator.device))


def normal_(out: torch.Tensor, key: int | Sequence[int], mean: float = 0.0, std: float = 1.0, first: int = 0,
            parts: int | None = None) -> torch.Tensor:
    """Fill ``out`` (float32 or bfloat16 on the CPU) with normals ``first``, ``first + 1``, ... of stream
    ``key``, times ``std`` plus ``mean``, in row-major order (in bfloat16: those float32 values rounded
    to nearest); with a sequence of keys, ``out[m]`` from stream ``key[m]``. ``out`` may be a view with
    gaps between its rows, e.g. some columns of a matrix, as long as each row is contiguous. Each
    stream's fill is split into ``parts`` ranges (by default enough for every torch thread), which run
    on torch's OpenMP threads; no split changes a value."""
    if out.dtype not in (torch.float32, torch.bfloat16) or out.device.type != "cpu":
        raise ValueError(f"normal_ fills a float32 or bfloat16 CPU tensor, got {out.dtype} on {out.device}")
    keys = [key] if isinstance(key, int) else list(key)
    streams = out.unsqueeze(0) if isinstance(key, int) else out
    if streams.dim() == 0 or streams.shape[0] != len(keys):
        raise ValueError(f"{len(keys)} keys for a tensor of shape {tuple(out.shape)}: give one key per out[m]")
    try:
        rows = streams.view(len(keys), -1, streams.shape[-1] if streams.dim() > 1 else 1)
    except RuntimeError:
        rows = None
    if rows is None or (rows.stride(2) != 1 and rows.shape[2] > 1):
        raise ValueError(f"normal_ fills rows that are contiguous and evenly spaced; got strides {out.stride()}")
    if first < 0:
        raise ValueError(f"first={first}: a fill starts at a stream position >= 0")
    for k in keys:
        if not 0 <= k < 2**64:
            raise ValueError(f"key={k}: a stream key is an unsigned 64-bit integer")
    if parts is None:
        parts = -(-torch.get_num_threads() // len(keys))
    if parts < 1:
        raise ValueError(f"parts={parts}: a fill is split into at least one range")
    _library().memrnn_normal_streams(rows.data_ptr(), int(out.dtype == torch.bfloat16), len(keys), rows.stride(0),
                                     rows.shape[2], rows.stride(1), (ctypes.c_uint64 * len(keys))(*keys), first,
                                     rows.shape[1] * rows.shape[2], parts, mean, std)
    return out


def philox(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """The raw Philox4x32-10 block: four 32-bit words of (counter words, key words)."""
    words = [(ctypes.c_uint32 * n)(*v) for n, v in ((4, (0,) * 4), (4, counter), (2, key))]
    _library().memrnn_philox(*words)
    return tuple(words[0])
