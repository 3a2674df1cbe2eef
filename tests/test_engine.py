import os
import signal
import stat
import time

import numpy as np
import pytest
import torch
from distributed import Client

from memrnn import ablation, store
from memrnn.campaign import _train, each_run, finetune_runs, run_grid
from memrnn.cli import main
from memrnn.engine import InProcess, OnDask, engine, local_cluster
from memrnn.presets import make_config
from memrnn.slowpoints import analyse_run
from memrnn.train import train


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on loopback."""
    with local_cluster(2) as cluster:
        yield cluster


def _tensors(run_dir):
    return store.load_checkpoint(run_dir, store.checkpoint_steps(run_dir)[-1])


def _assert_same_weights(a, b):
    a, b = _tensors(a), _tensors(b)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _add(a, b):
    return a + b


def test_in_process_graph_resolves_dependencies_in_nested_arguments():
    graph = InProcess(progress=False)
    one = graph.submit(_add, 0, 1)
    three = graph.submit(_add, one, 2)
    assert graph.gather([one, {"x": three}, (graph.submit(sum, [one, three]),)]) == [1, {"x": 3}, (4,)]


def test_scheduler_choice(monkeypatch, cluster):
    monkeypatch.setenv("MEMRNN_SCHEDULER", "sync")
    with engine(None) as graph:
        assert isinstance(graph, InProcess)
    with engine(cluster.scheduler_address) as graph:
        assert isinstance(graph, OnDask) and len(graph.client.scheduler_info()["workers"]) == 2
        assert set(graph.client.run(torch.get_num_threads).values()) == {1}
        # Dask's default 64 KiB trim threshold halves a torch training loop's speed (page faults)
        assert set(graph.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
        assert graph.resources is None  # no GPU advertised: tasks must not wait for one


def test_grid_cli_on_a_separate_cluster_equals_in_process(tmp_path, cluster, one_thread):
    """Bit for bit, in-process with one thread as on the workers."""
    args = ["grid", "--preset", "smoke", "--archs", "gru", "--protocols", "none,decu", "--delays", "4,30",
            "--quiet", "--set", "steps=20"]
    assert main(args + ["--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address]) == 0
    rows = one_thread(run_grid, "smoke", ["gru"], ["none", "decu"], delays=[4, 30], out=tmp_path / "here",
                      progress=False, scheduler="sync", steps=20)
    assert store.read_json(tmp_path / "dask" / "grid-smoke-synthetic.json") == rows
    for row in rows:
        _assert_same_weights(tmp_path / "dask" / row["run"], tmp_path / "here" / row["run"])


def test_killed_worker_loses_nothing(tmp_path, cluster):
    """Kill the worker process training a run after its first checkpoint: Dask reschedules the task, which
    resumes from the checkpoint and ends with the weights of an uninterrupted run, bit for bit. The first
    attempt waits after that checkpoint, so the kill lands inside the task however fast the machine is."""
    config = make_config("smoke", steps=160, checkpoint_every=20, log_every=10, device="cpu")
    out, waiting = tmp_path / "killed", tmp_path / "waiting"

    def first_attempt_waits_for_the_kill():
        if waiting.exists():
            return _train(config, out)
        train(config, out, progress=False, stop_after=20)
        waiting.touch()
        time.sleep(120)
        raise TimeoutError("the worker was not killed")

    with Client(cluster, set_as_default=False) as client:
        killed = client.submit(first_attempt_waits_for_the_kill)
        reference = client.submit(_train, config, tmp_path / "reference")
        run_dir = out / store.run_name(config)
        deadline = time.monotonic() + 120
        while not waiting.exists():
            assert time.monotonic() < deadline, "the first attempt did not reach its checkpoint"
            time.sleep(0.05)
        assert store.checkpoint_steps(run_dir) == [20]
        worker = next(w for w, keys in client.processing().items() if killed.key in keys)
        first = run_dir / "checkpoints" / "step_0000020.safetensors"
        written = first.stat().st_mtime_ns
        os.kill(client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
        results = [future.result(timeout=300) for future in (killed, reference)]  # a lost task fails, not hangs
        assert results == [str(run_dir), str(tmp_path / "reference" / run_dir.name)]
    assert first.stat().st_mtime_ns == written  # resumed, not started again
    _assert_same_weights(run_dir, tmp_path / "reference" / run_dir.name)
    assert store.read_json(run_dir / store.METRICS_FILE) == store.read_json(
        tmp_path / "reference" / run_dir.name / store.METRICS_FILE)


def test_only_holders_of_the_clusters_certificate_can_connect(cluster):
    """Another local user reaching the loopback port, with a certificate of their own, none, or plain TCP,
    is refused. Dask's comm layer is called directly: a refused `Client` leaves its IO-loop thread behind,
    and a later `Client` in the same process may then fail to start for that reason alone."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    address = cluster.scheduler_address
    assert address.startswith("tls://127.0.0.1:")

    async def handshake(address, **connection_args):
        comm = await connect(address, timeout="3s", **connection_args)
        await comm.close()

    attempts = [(address, Security.temporary().get_connection_args("client")),
                (address, Security().get_connection_args("client")),
                (address.replace("tls://", "tcp://"), {})]
    for target, connection_args in attempts:
        with pytest.raises((OSError, TypeError)):
            asyncio.run(handshake(target, **connection_args))
    asyncio.run(handshake(address, **cluster.security.get_connection_args("client")))  # the owner gets in


def test_run_lock_is_reentrant_in_one_thread(tmp_path):
    with store.run_lock(tmp_path / "run"):
        with store.run_lock(tmp_path / "run"):
            pass
        assert (tmp_path / "run" / ".lock").exists()


def _chapter_graphs(out, scheduler):
    """The chapters' graphs on smoke runs: slow points of every run, fine-tunes with evaluation and
    comparison, and the ablation's settings, two of which share the reference's networks."""
    rows = run_grid("smoke", ["gru"], ["none", "decu"], delays=[4, 100], out=out, progress=False, scheduler="sync",
                    steps=20, search_iterations=200)
    run_dirs = [out / row["run"] for row in rows]
    wanted = [{"mode": "control", "steps": 4}, {"mode": "slowpoints", "steps": 4, "lam": 1e-2}]
    return (each_run(analyse_run, run_dirs, progress=False, scheduler=scheduler),
            finetune_runs(run_dirs, [wanted] * len(run_dirs), delays=[4, 100], progress=False, scheduler=scheduler),
            ablation.measure("smoke", "gru", ["none", "decu"], SETTINGS, out, [4, 100], progress=False,
                             scheduler=scheduler, steps=20, search_iterations=200))


SETTINGS = [None, ablation.Switch("search", "lm"), ablation.Switch("finetune", "continue")]


def test_chapter_analyses_on_a_cluster_equal_in_process(tmp_path, cluster, one_thread):
    """Bit for bit, in-process with one thread as on the workers (Levenberg-Marquardt's solves round
    differently with more threads)."""
    sections, tables, measured = _chapter_graphs(tmp_path / "dask", cluster.scheduler_address)
    sections_here, tables_here, measured_here = one_thread(_chapter_graphs, tmp_path / "here", "sync")
    assert [len(table) for table in tables] == [2, 2] and list(measured) == SETTINGS
    assert sections == sections_here and tables == tables_here
    for switch in SETTINGS:
        for key in ("trained", "long", "gain"):
            np.testing.assert_array_equal(measured[switch][key], measured_here[switch][key])
        for dask_array, here_array in zip(measured[switch]["correlation"], measured_here[switch]["correlation"]):
            np.testing.assert_array_equal(dask_array, here_array)
    # the search switch reuses the reference's networks: only what depends on the analysis may change
    assert measured[SETTINGS[1]]["runs"] == measured[None]["runs"]
    np.testing.assert_array_equal(measured[SETTINGS[1]]["long"], measured[None]["long"])


def test_finetune_runs_needs_one_list_per_parent(tmp_path):
    with pytest.raises(ValueError, match="2 parents, 1 lists"):
        finetune_runs([tmp_path / "a", tmp_path / "b"], [[{"mode": "control"}]], scheduler="sync")


def test_shared_cluster_serves_every_engine_call_and_child_process(monkeypatch, tmp_path):
    """A book run starts one cluster: engine() calls and chapter kernels (child processes) all find it.
    Its credentials and scratch space share one private temporary folder, gone when it closes."""
    import subprocess
    import sys
    import tempfile

    from memrnn.engine import CREDENTIALS_ENV, SCHEDULER_ENV, shared_cluster

    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with shared_cluster() as address:
        assert address.startswith("tls://127.0.0.1:") and os.environ[SCHEDULER_ENV] == address
        credentials = os.environ[CREDENTIALS_ENV]
        assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(credentials)).st_mode) == 0o700
        assert os.listdir(tmp_path) == [os.path.basename(os.path.dirname(credentials))]
        assert "dask-scratch-space" in os.listdir(os.path.dirname(credentials))
        seen = set()
        for _ in range(2):
            with engine() as graph:
                seen.add(graph.client.scheduler.address)
                assert graph.gather(graph.submit(_add, 1, 2)) == 3
        assert seen == {address}
        # a chapter kernel: a child process that finds the cluster and its credentials in the environment
        code = ("import os; from memrnn.engine import engine\n"
                "with engine(progress=False) as graph:\n"
                "    print(graph.client.scheduler.address, graph.gather(graph.submit(pow, 2, 5)))")
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert child.stdout.split() == [address, "32"]
        with shared_cluster() as inner:  # already published: no second cluster
            assert inner == address
    assert SCHEDULER_ENV not in os.environ and CREDENTIALS_ENV not in os.environ
    assert not os.path.exists(os.path.dirname(credentials)) and os.listdir(tmp_path) == []
    with shared_cluster("sync") as none:
        assert none is None and SCHEDULER_ENV not in os.environ
