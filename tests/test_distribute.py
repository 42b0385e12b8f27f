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


# (model, case) of distributed_worker.MODEL_CASES; see CASES there for the batches.
UPDATES = [("rbm_cd", "even"), ("rbm_cd", "uneven"), ("rbm_cd", "last_of_one"),
           ("rbm_pcd", "even"), ("rbm_pcd", "uneven"), ("rbm_pcd", "last_of_one"),
           ("rbm_pcd", "train_on_batch_one"),
           ("dbm", "even"), ("dbm", "uneven"), ("dbm", "last_of_one"),
           ("dbm", "train_on_batch_one"),
           ("dbm_centered", "even"), ("dbm_centered", "last_of_one"),
           ("sequential", "even")]


def test_every_case_reported(report):
    assert sorted(report["models"]) == sorted(f"{name}/{case}" for name, case in UPDATES)


@pytest.mark.parametrize("name,case", UPDATES)
def test_update_equals_single_device(report, name, case):
    # Deterministic configurations (mean-field states), SGD with momentum. Whatever the
    # split of a global batch (20 + 20 rows, 11 + 10, a last batch of 1 + 0), the
    # replicas' gradients weighted by their rows, with every replica's chains in the
    # negative phase, are the single-device gradient: the weights agree to float32
    # rounding (the updates are ~1e-3, 3e-2 after a batch of one row).
    result = report["models"][f"{name}/{case}"]
    assert result["max_update"] > 1e-4, result
    assert result["max_diff"] < 1e-6, result


@pytest.mark.parametrize("name", ["batch_21", "last_of_one"])
def test_any_global_batch_trains(report, name):
    # The sampled PCD RBM of issue 43: 200 rows at batch 21 (uneven splits) and 201
    # at batch 20 (a last batch of one row, the second replica none) train every batch.
    result = report["any_batch"][name]
    assert result["error"] is None, result
    assert result["finite"], result
    assert result["steps"] == {"batch_21": 10, "last_of_one": 11}[name], result


@pytest.mark.parametrize("name, words", [
    ("x5", "ValueError: Expected values in [0, 1] in `x` for BernoulliUnits. Received: "
           "values between 0 and 5 in the batch of epoch 1, step 51."),
    ("nan", "ValueError: Expected finite values in `x`. Received: NaN or inf entries in "
            "the batch of epoch 1, step 51.")])
def test_a_bad_batch_is_refused_across_replicas(report, name, words):
    # 1,000 good rows (50 batches of 20), then bad ones: 50 updates, then the error.
    result = report["bad_batch"][name]
    assert result["error"] is not None and result["error"].startswith(words), result
    assert result["steps"] == 50 and result["finite"], result


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


@pytest.mark.parametrize("name", ["rbm_pcd", "rbm_pt", "dbm"])
@pytest.mark.parametrize("call", ["fit", "train_on_batch", "fit_uncompiled"])
def test_chains_must_split_evenly_before_anything_changes(report, name, call):
    # 7 chains over 2 replicas: the error comes first; no weight, chain or
    # `data_initialized` has changed.
    result = report["odd_chains"][f"{name}/{call}"]
    assert result["error"] == (
        "Expected `n_chains` divisible by the number of replicas (2), so that each keeps "
        "an equal share of the persistent chains. Received: n_chains=7"), result
    assert result["unchanged"] and not result["data_initialized"], result
