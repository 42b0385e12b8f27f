"""tf.distribute across processes: two workers of a `MultiWorkerMirroredStrategy` on
127.0.0.1 (CPU only, one replica each) train an RBM and a DBM together.

Their first update equals the single-device update on the same global batch, and a
worker that dies, or stalls, mid-run makes the other fail with an error instead of
waiting forever: the workers' collectives time out after `TIMEOUT_S` seconds
(``CommunicationOptions(timeout_seconds=TIMEOUT_S)``). Every wait here is bounded and
both processes are killed at the end, whatever happens.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("distributed_worker.py")
#: The workers' collective timeout (seconds): long enough for one worker to trace a
#: train function while the other waits at its first collective on a busy machine.
TIMEOUT_S = 30
#: Bound on any wait for the workers (start-up, training, failing).
WAIT_S = 300
#: Deterministic configurations (mean-field states): one global batch of 21 rows,
#: 11 on one worker and 10 on the other.
SPEC = {
    "models": {
        "rbm": ["RBM", [64, 16], {"learning": "pcd", "n_chains": 10,
                                  "sample_hidden": False, "seed": 0}],
        "dbm": ["DBM", [[64, 16, 8]], {"n_chains": 10, "sample_particles": False,
                                       "n_mean_field": 5, "seed": 0}],
    },
    "rows": 21, "batch": 21, "timeout_seconds": TIMEOUT_S,
}


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Workers:
    """Two worker processes of `distributed_worker.py multi_worker`, stderr in files."""

    def __init__(self, out, stall=None):
        self.out = out
        spec = json.dumps({**SPEC, "stall": stall})
        cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
        self.procs = []
        for index in range(2):
            env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
                       TF_CONFIG=json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": index}}))
            with open(out / f"stderr_{index}.txt", "w") as err:
                self.procs.append(subprocess.Popen(
                    [sys.executable, str(WORKER), "multi_worker", str(out), spec],
                    env=env, stdout=subprocess.DEVNULL, stderr=err))

    def stderr(self, index):
        return (self.out / f"stderr_{index}.txt").read_text()

    def wait_until_training(self):
        """Wait until both workers have trained a batch of their long run."""
        deadline = time.monotonic() + WAIT_S
        while not all((self.out / f"alive_{i}").exists() for i in range(2)):
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    pytest.fail(f"worker {i} exited ({proc.returncode}) before training:\n"
                                + self.stderr(i)[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"the workers did not start training in {WAIT_S} s")
            time.sleep(0.2)

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(timeout=60)


@pytest.fixture
def workers(tmp_path):
    started = []

    def start(stall=None):
        started.append(Workers(tmp_path, stall))
        return started[-1]

    yield start
    for w in started:
        w.close()


def single_device_weights(name):
    """The spec's model after its first update on one device, and its weights before."""
    import keras
    from sklearn.datasets import load_digits

    import tfboltz as tb

    x = (load_digits().data / 16.0).astype("float32")
    cls, args, kwargs = SPEC["models"][name]
    keras.utils.set_random_seed(0)
    model = getattr(tb, cls)(*args, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    before = [w.numpy().copy() for w in model.weights]
    model.fit(x[:SPEC["rows"]], batch_size=SPEC["batch"], epochs=1, shuffle=False, verbose=0)
    fresh = getattr(tb, cls)(*args, **kwargs)
    return model, before, fresh


def check_failed(workers, index, since):
    """Wait (a bounded time) for worker `index` to fail; returns the seconds since
    `since` and its stderr."""
    try:
        code = workers.procs[index].wait(timeout=TIMEOUT_S + 60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker {index} still waits {TIMEOUT_S + 60} s after its peer stopped")
    took = time.monotonic() - since
    err = workers.stderr(index)
    assert code != 0, err[-3000:]
    return took, err


def test_two_workers_train_together_and_fail_when_one_dies(workers, tmp_path):
    w = workers()
    w.wait_until_training()
    assert [(tmp_path / f"replicas_{i}").read_text() for i in range(2)] == ["2", "2"]
    w.procs[1].send_signal(signal.SIGKILL)
    took, err = check_failed(w, 0, time.monotonic())
    # The peer's port is closed: an UnavailableError, at once.
    assert "UnavailableError" in err and "Collective ops is aborted" in err, err[-3000:]
    assert took < TIMEOUT_S, took
    w.close()
    for name in SPEC["models"]:
        model, before, saved = single_device_weights(name)
        saved.load_weights(tmp_path / f"{name}.weights.h5")
        moved = max(float(np.max(np.abs(var.numpy() - b)))
                    for var, b in zip(model.weights, before) if "kernel" in var.path)
        diff = {var.path: float(np.max(np.abs(var.numpy() - s.numpy())))
                for var, s in zip(model.weights, saved.weights) if var.dtype == "float32"}
        assert moved > 1e-4, (name, moved)
        assert max(diff.values()) < 1e-5, (name, diff)


@pytest.mark.slow
def test_a_stalled_worker_times_out(workers):
    # Worker 1 sleeps in a callback after its first batch: alive, heartbeats going,
    # but never at the next collective. Worker 0 waits there for TIMEOUT_S seconds.
    w = workers(stall=1)
    w.wait_until_training()
    took, err = check_failed(w, 0, time.monotonic())
    assert "DeadlineExceededError" in err and "Collective has timed out" in err, err[-3000:]
    assert TIMEOUT_S / 2 < took < TIMEOUT_S + 60, took
