"""tf.distribute: training under MirroredStrategy on two logical CPU devices.

The devices can only be split before TensorFlow initialises them, so the checks run
in a fresh process (tests/distributed_worker.py) and report back as JSON.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("distributed_worker.py")


@pytest.fixture(scope="module")
def report():
    proc = subprocess.run([sys.executable, str(WORKER)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_replicas(report):
    assert report["replicas"] == 2


@pytest.mark.parametrize("name", ["rbm_cd", "rbm_pcd", "dbm", "dbm_centered", "sequential"])
def test_first_update_equals_single_device(report, name):
    # Deterministic configurations (mean-field states), one global batch of 40 rows,
    # SGD with momentum: the mean of the two replicas' gradients is the single-device
    # gradient, so the weights agree to float32 rounding (the update itself is ~1e-3).
    result = report["models"][name]
    assert result["max_update"] > 1e-4, result
    assert result["max_diff"] < 1e-6, result


def test_sampled_models_train_under_strategy(report):
    assert report["rbm_finite"] and report["dbm_finite"] and report["dbn_finite"]
    assert report["dbn_updown_moved"] > 0
    assert all(v == v and 0 < v < 0.2 for v in report["rbm_recon"] + report["dbm_recon"])


def test_parallel_tempering_trains_under_strategy(report):
    # Each replica tempers its own share of the ladders (5 of 10, all 4 temperatures).
    assert report["pt_finite"] and report["pt_chains_shape"] == [40, 64]
    assert all(0 < v < 1 for v in report["pt_swap_rate"]), report["pt_swap_rate"]
    assert report["dbm_pt_finite"] and report["dbm_pt_particle_rows"] == [30, 30, 30]
    assert all(0 < v < 1 for v in report["dbm_pt_swap_rate"]), report["dbm_pt_swap_rate"]


def test_replicas_draw_different_noise(report):
    # Both shares of the PCD chains started identical; with the replica id folded into
    # the seed they diverge.
    assert report["rbm_shares_identical"] is False


def test_chains_must_split_evenly(report):
    assert "divisible by the number of replicas (2)" in report["odd_chains_error"]
