"""bf16 matmuls with one meaning on every CPU: operands rounded to bf16, products summed in float32,
the result rounded to bf16.

Why: the fast path's projections are bf16 matmuls, which oneDNN runs 1.9-2.5 times as fast as float32
where the CPU multiplies bf16 (AVX512-BF16, AMX) and 20-57 times slower where it does not (AVX2
only: no bf16 kernel). The product of two bf16 numbers is exact in float32, so elsewhere the same
matmul is a float32 matmul of the bf16 operands: the results agree to summation order, and the fast
path is never slower than float32 for want of bf16 hardware. Which execution runs is decided once per
process (``execution``); ``MEMRNN_BF16=native`` or ``=float32`` forces one, e.g. to compare them.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

BF16 = torch.bfloat16
EXECUTIONS = ("native", "float32")
ENVIRONMENT = "MEMRNN_BF16"
# CPU flags of native bf16 multiplication (Linux names); oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) that keep it
_FLAGS = ("avx512_bf16", "amx_bf16")
_ISA_WITH_BF16 = ("ALL", "DEFAULT", "BF16", "AMX", "FP16", "AVX10")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags known, so float32 (never slower)
        return set()
    return next((set(line.partition(":")[2].split()) for line in text.splitlines() if line.startswith("flags")), set())


def _native_bf16() -> bool:
    """The CPU multiplies bf16 and oneDNN (which torch's CPU bf16 matmuls call) may use it."""
    if not set(_FLAGS) & _cpu_flags() or not torch.backends.mkldnn.is_available():
        return False
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if supported is not None and not supported():
        return False
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    return any(name in cap for name in _ISA_WITH_BF16)


@lru_cache(maxsize=1)
def execution() -> str:
    """"native" (oneDNN's bf16 kernels) or "float32" (float32 matmuls of the bf16 operands), once per process."""
    forced = os.environ.get(ENVIRONMENT, "")
    if forced:
        if forced not in EXECUTIONS:
            raise ValueError(f"{ENVIRONMENT}={forced!r} is not allowed; choose one of {EXECUTIONS} or leave it unset")
        return forced
    return "native" if _native_bf16() else "float32"


def describe() -> str:
    """The CPU capability torch uses and which execution the bf16 matmuls get, for benchmark tables."""
    flags = sorted(set(_FLAGS) & _cpu_flags())
    return (f"CPU capability {torch.backends.cpu.get_cpu_capability()} ({', '.join(flags) or 'no bf16 flags'}), "
            f"bf16 matmuls {'native' if execution() == 'native' else 'as float32'}")


def _emulated(a: torch.Tensor) -> bool:
    return a.dtype == BF16 and a.device.type == "cpu" and execution() == "float32"


def bmm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.bmm`` of bf16 ``a`` and ``b``, in bf16 (into ``out`` when given)."""
    if not _emulated(a):
        return torch.bmm(a, b, out=out)
    return _rounded(torch.bmm(a.float(), b.float()), out)


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.matmul`` of bf16 ``a`` and ``b``, in bf16 (into ``out`` when given)."""
    if not _emulated(a):
        return torch.matmul(a, b, out=out)
    return _rounded(torch.matmul(a.float(), b.float()), out)


def _rounded(result: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    return result.to(BF16) if out is None else out.copy_(result)
