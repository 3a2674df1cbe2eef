import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from memrnn.engine import _ONE_THREAD


@pytest.fixture(autouse=True)
def no_published_runs(monkeypatch):
    """Chapters and ``prepare_runs`` never download the published archive of trained runs in a test
    (tests of that hook turn it back on)."""
    monkeypatch.setenv("MEMRNN_FETCH_RUNS", "0")


@pytest.fixture
def one_thread():
    """``call(fn, *args, **kwargs)``: run ``fn`` in a fresh process whose torch computes with one thread,
    as a Dask worker's does, and return its result. With one thread a kernel's summation order does not
    depend on the machine's core count. The thread count goes through the environment because calling
    ``torch.set_num_threads`` breaks batched LU solves in this torch build."""
    def call(fn, *args, **kwargs):
        with pytest.MonkeyPatch.context() as patch:
            for name, value in _ONE_THREAD.items():
                patch.setenv(name, value)
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                return pool.submit(fn, *args, **kwargs).result()
    return call
