"""The campaign engine: independent conditions run as tasks on Dask (``dask.distributed``).

A task is "train / evaluate / analyse this configuration into its hashed run directory", so the run
store stays the one truth: a task that is retried (its worker died) or submitted again (a second
campaign, a later session) resumes from the last checkpoint or reuses the finished result. Tasks
take the run directory's lock, so two of them never write one run at once.

Where tasks run is chosen by ``scheduler``:

- ``None``: the ``MEMRNN_SCHEDULER`` environment variable if set, else an embedded local cluster
  started and closed here: one single-threaded worker process per CPU core this process may use
  (``dask.system.CPU_COUNT``: affinity and cgroup quota, not the host's count), or one per GPU (each
  seeing only its GPU and advertising ``resources={"GPU": 1}``), bound to 127.0.0.1, no dashboard,
  speaking TLS with a certificate made for this cluster alone: a plain loopback port would take tasks
  (code run as you) from any user of a shared machine. ``shared_cluster`` hands the certificate to child
  processes in a file only you can read, named by ``MEMRNN_SCHEDULER_CREDENTIALS``.
- ``"sync"``: in this process, one task after another (debugging; callers that are Dask tasks).
- an address such as ``tcp://10.0.0.5:8786``: an existing cluster (its workers must see ``out``).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import threading

from tqdm.auto import tqdm

SCHEDULER_ENV = "MEMRNN_SCHEDULER"
CREDENTIALS_ENV = "MEMRNN_SCHEDULER_CREDENTIALS"  # a PEM file with the local cluster's key and certificate
IN_PROCESS = ("sync", "none")
RETRIES = 2  # a task that raises is tried again; one whose worker dies is rescheduled by Dask itself
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
_STARTED_HERE: dict = {}  # scheduler address -> credentials, for the clusters this process started


def local_cluster(n_workers: int | None = None, scratch: str | None = None):
    """A cluster on this machine, on loopback and TLS only: one worker per GPU, else one per CPU core.
    ``scratch``: the folder for its scheduler's and workers' scratch space (Dask's default,
    ``dask-scratch-space`` in the temporary folder, outlives the cluster)."""
    import dask
    import torch
    from distributed import Nanny, Scheduler, SpecCluster
    from distributed.security import Security

    gpus = torch.cuda.device_count()
    n_workers = n_workers or gpus or dask.system.CPU_COUNT or 1
    security = Security.temporary()  # a new key and self-signed certificate, held in memory
    tls = {"host": "127.0.0.1", "protocol": "tls", "security": security, "local_directory": scratch}

    def worker(i: int) -> dict:
        options = {"nthreads": 1, **tls, "env": dict(_ONE_THREAD), "dashboard": False,
                   "silence_logs": logging.ERROR}
        if gpus:
            options["env"]["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
            options["resources"] = {"GPU": 1}
        return {"cls": Nanny, "options": options}

    scheduler = {"cls": Scheduler, "options": {**tls, "dashboard_address": None}}
    # Dask sets MALLOC_TRIM_THRESHOLD_=64 KiB for its workers: glibc then hands every freed tensor back to
    # the kernel, and a training loop of small torch ops spends about half its time in page faults
    # (2 workers on 2 cores ran at 0.5x). Workers keep glibc's adaptive default instead.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), _stop_signals_ignored():
        cluster = SpecCluster({i: worker(i) for i in range(n_workers)}, scheduler=scheduler,
                              silence_logs=logging.ERROR, security=security)
    _STARTED_HERE[cluster.scheduler_address] = security
    return cluster


@contextlib.contextmanager
def _stop_signals_ignored():
    """SIGINT and SIGTERM ignored while the workers start, so that they inherit that. Ctrl-C or a SIGTERM
    reaches the whole process group, and a worker that took it would die mid-task (its nanny starting
    another) while this process, which owns the cluster, closes it anyway; a worker whose owner dies
    exits by itself (its nanny's pipe closes)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def shared_cluster(scheduler: str | None = None):
    """One local cluster for many engine calls, even from other processes (a book's chapter kernels):
    started here and published in ``MEMRNN_SCHEDULER`` (its credentials in ``MEMRNN_SCHEDULER_CREDENTIALS``)
    unless ``scheduler`` or that variable already names one. Yields the address in use, or None when
    tasks run in process."""
    chosen = scheduler or os.environ.get(SCHEDULER_ENV)
    if chosen:
        yield None if chosen.lower() in IN_PROCESS else chosen
        return
    with tempfile.TemporaryDirectory(prefix="memrnn-dask-") as folder, local_cluster(scratch=folder) as cluster, \
            environment(SCHEDULER_ENV, cluster.scheduler_address), \
            environment(CREDENTIALS_ENV, _credentials_file(cluster.security, folder)):
        try:
            yield cluster.scheduler_address
        except BaseException:  # interrupted or failed: the tasks in flight are abandoned, not waited for
            cluster.sync(_close_now, list(cluster.workers.values()))
            raise


async def _close_now(nannies) -> None:
    """Close the workers giving each 0.8 s, not Dask's 4, to end its task (a training step never
    checks for a close request) before its process is terminated."""
    await asyncio.gather(*(nanny.close(timeout=1) for nanny in nannies))


def _credentials_file(security, folder: str) -> str:
    """The cluster's key and certificate in a 0600 file inside ``folder`` (a 0700 temporary folder,
    removed with the cluster's scratch space on exit)."""
    path = os.path.join(folder, "credentials.pem")
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(security.tls_client_key + security.tls_client_cert)
    return path


def _security(address: str):
    """Credentials for ``address``: a cluster this process started, else the file that
    ``MEMRNN_SCHEDULER_CREDENTIALS`` names (for tls:// addresses), else none (a cluster of your own)."""
    from distributed.security import Security

    if address in _STARTED_HERE:
        return _STARTED_HERE[address]
    path = os.environ.get(CREDENTIALS_ENV)
    if path and address.startswith("tls://"):
        return Security(require_encryption=True, tls_ca_file=path, tls_client_cert=path, tls_client_key=path)
    return None


@contextlib.contextmanager
def environment(name: str, value: str):
    """``name`` set to ``value`` in this process's environment (and its children's) for the block."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


@contextlib.contextmanager
def engine(scheduler: str | None = None, progress: bool = True):
    """The graph builder for ``scheduler`` (see the module docstring), closed on exit."""
    origin = "--scheduler" if scheduler else f"${SCHEDULER_ENV}"
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if scheduler is not None and scheduler.lower() in IN_PROCESS:
        yield InProcess(progress)
        return
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="memrnn-dask-"))
            client = stack.enter_context(Client(stack.enter_context(local_cluster(scratch=scratch))))
        else:
            try:
                client = stack.enter_context(Client(scheduler, security=_security(scheduler)))
            except Exception as e:  # distributed raises OSError, ValueError, TypeError... by address and failure
                where = f" (the address came from {origin})" if origin.startswith("$") else ""
                raise RuntimeError(f"cannot use the Dask scheduler {scheduler!r}{where}: {e}") from None
        yield OnDask(client, progress)


class OnDask:
    """Tasks submitted as Dask futures; a future passed as an argument makes a dependency."""

    def __init__(self, client, progress: bool):
        self.client, self.progress, self.futures = client, progress, []
        workers = client.scheduler_info(n_workers=-1)["workers"].values()  # n_workers: distributed >= 2025.4
        self.resources = {"GPU": 1} if any("GPU" in w.get("resources", {}) for w in workers) else None

    def submit(self, fn, *args, **kwargs):
        future = self.client.submit(fn, *args, retries=RETRIES, resources=self.resources, **kwargs)
        self.futures.append(future)
        return future

    def gather(self, outputs):
        """Wait for every submitted task (a bar over the whole graph), then return ``outputs``' results."""
        from distributed import as_completed

        with tqdm(total=len(self.futures), desc="tasks", unit="task", disable=not self.progress) as bar:
            for future in as_completed(self.futures):
                if future.status == "error":
                    future.result()  # raises the task's exception here
                bar.update()
        return self.client.gather(outputs)


class InProcess:
    """The same graph run here, in submission order (dependencies are always submitted first)."""

    def __init__(self, progress: bool):
        self.progress, self.tasks = progress, []

    def submit(self, fn, *args, **kwargs):
        self.tasks.append((fn, args, kwargs))
        return _Pending(len(self.tasks) - 1)

    def gather(self, outputs):
        results = []
        for fn, args, kwargs in tqdm(self.tasks, desc="tasks", unit="task", disable=not self.progress):
            results.append(fn(*_resolve(args, results), **_resolve(kwargs, results)))
        return _resolve(outputs, results)


class _Pending:
    def __init__(self, index: int):
        self.index = index


def _resolve(value, results):
    """``value`` with every pending task inside (lists, tuples, dicts) replaced by its result."""
    if isinstance(value, _Pending):
        return results[value.index]
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, results) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, results) for k, v in value.items()}
    return value
