"""memrnn: see, test and control how recurrent networks keep memories.

A reproducible companion to Haviv, Rivkind & Barak, "Understanding and Controlling Memory in
Recurrent Neural Networks" (ICML 2019). Your own network: ``EnsembleRNN.from_torch`` and
``find_fixed_points`` (see :mod:`memrnn.fixedpoints`).
"""
__version__ = "0.1.0"
# the one place that names the repository: the book's configuration, install cells and fetches derive
# from it (tests/test_book.py checks)
REPOSITORY = "https://github.com/memrnn/memrnn"

from .fixedpoints import (FixedPoints, find_fixed_points, reachable_region, sample_starts, step_function,  # noqa: E402
                          unroll)
from .models import EnsembleRNN  # noqa: E402

__all__ = ["EnsembleRNN", "FixedPoints", "find_fixed_points", "reachable_region", "sample_starts", "step_function",
           "unroll"]
