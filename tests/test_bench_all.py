"""The all-model benchmark's own arithmetic (not a timing test): product counting,
the products-only loop and the table."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location(
    "bench_all", Path(__file__).parents[1] / "benchmarks" / "bench_all.py")
bench_all = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_all)
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))  # numpy_loops


def test_product_lists_and_flop():
    cd = bench_all.rbm_products(784, 1024, 100)
    assert len(cd) == 4 and cd[-1] == (784, 200, 1024, True, False)
    assert bench_all.flop(cd, 600) == pytest.approx(
        2 * 600 * (3 * 100 * 784 * 1024 + 784 * 200 * 1024))
    dbm = bench_all.dbm_products(n_mf=10, k=1)
    assert len(dbm) == 2 + 2 * 10 + 4 + 2 + 1
    assert len(bench_all.dbm_products()) == 2 + 2 * 5 + 4 * 5 + 2 + 1  # the recipe's step
    dbn = bench_all.dbn_products()
    assert len(dbn) == 3 + 2 * 3 + 1 + 10
    # Every product of the up-down step, counted by hand (multiply-adds per row of 100).
    assert bench_all.flop(dbn, 1) == pytest.approx(2 * 100 * (
        784 * 500 * 6 + 500 * 500 * 6 + 510 * 2000 * (1 + 2 * 3 + 2)))
    # The RBM's epoch-end monitors: one product of at most 1,000 rows.
    assert bench_all.monitor_products(np.zeros((60000, 784)), 512) == [(1000, 784, 512)]
    assert bench_all.monitor_products(np.zeros((300, 64)), 16) == [(300, 64, 16)]
    plain, adv = bench_all.finetune_products(1784), bench_all.finetune_products(1784, "adversarial")
    assert len(plain) == 8 and (1784, 100, 500, True, False) in plain
    # two forwards, one gradient down to the input, two halves' weight gradients
    assert len(adv) == 3 + 3 + 3 + 2 * 5 and adv.count((100, 500, 1784, False, True)) == 1
    assert bench_all.flop(adv, 1) == pytest.approx(
        2 * bench_all.flop(plain, 1) + 2 * 100 * (10 * 1000 + 1000 * 500 + 500 * 1784))
    # VAT: one more forward for the reference, and two for the power step (its forward
    # and the forward-mode tangent J d)
    vat = bench_all.finetune_products(1784, "vat")
    assert len(vat) == len(adv) + 3 * 3
    assert bench_all.flop(vat, 1) == pytest.approx(
        bench_all.flop(adv, 1) + 3 * 2 * 100 * (1784 * 500 + 500 * 1000 + 1000 * 10))
    # the paper's finite difference: one forward fewer than the exact power step
    assert len(bench_all.finetune_products(1784, "vat_fd")) == len(vat) - 3
    # the L2 fast gradient: the sign's products; orienting VAT: forwards at x + r, x - r
    assert bench_all.finetune_products(1784, "adversarial_l2") == adv
    oriented = bench_all.finetune_products(1784, "vat_oriented")
    assert len(oriented) == len(vat) + 2 * 3
    assert bench_all.flop(oriented, 1) == pytest.approx(
        bench_all.flop(vat, 1) + 2 * 2 * 100 * (1784 * 500 + 500 * 1000 + 1000 * 10))


def test_products_time_runs_transposed_and_bfloat16():
    prods = [(8, 16, 4), (8, 16, 4, False, True), (16, 8, 4, True, False)]
    assert bench_all.products_time(prods, 3) > 0
    assert bench_all.products_time(prods, 3, "bfloat16") > 0


def test_table_marks_targets():
    results = {
        "rbm_cd1": {"seconds": 3.0, "products_s": 2.5, "gflops": 200.0, "ratio": 1.2,
                    "peak_mb": 1000.0},
        "finetune": {"seconds": 5.0, "products_s": 2.0, "gflops": 200.0, "ratio": 2.5,
                     "peak_mb": 2000.0},
        "finetune_adv": {"seconds": 9.0, "products_s": 4.5, "gflops": 200.0, "ratio": 2.0,
                         "peak_mb": 2000.0},
        "finetune_vat_oriented": {"seconds": 15.0, "products_s": 9.0, "gflops": 200.0,
                                  "ratio": 1.67, "peak_mb": 2000.0},
        "ais_dbm": {"seconds": 90.0, "log_z": 1618.3, "n_betas": 20000, "peak_mb": 1200.0},
        "dbm_joint": {"error": "boom"},
        "dbn_updown": {"seconds": 8.0, "products_s": 7.0, "gflops": 200.0, "ratio": 1.14,
                       "peak_mb": 900.0},
        "dbn_updown_numpy": {"seconds": 9.0},
        "dbm_pretrain": {"seconds": 3.0, "products_s": 2.6, "gflops": 200.0, "ratio": 1.15,
                         "peak_mb": 900.0},
        "dbm_pretrain_numpy": {"seconds": 4.0},
    }
    text = bench_all.table(results, {"sklearn": {"seconds": 10.0}, "numpy": {"seconds": 4.0}})
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert " ok " in lines["rbm_cd1"] and "sklearn 10.00 s (0.30x)" in lines["rbm_cd1"]
    assert "4.00     0.75" in lines["rbm_cd1"]  # bench_rbm.py's numpy loop: 3.0 / 4.0
    # Within 1.2x of its products but 0.89x numpy (target 0.8): missed.
    assert "9.00     0.89  MISSED" in lines["dbn_updown"]
    assert "4.00     0.75      ok" in lines["dbm_pretrain"]
    assert "dbn_updown_numpy" not in lines
    assert "MISSED" in lines["finetune"]
    assert "plain 5.00 s (1.80x)" in lines["finetune_adv"]
    assert "plain 5.00 s (3.00x)" in lines["finetune_vat_oriented"]
    assert " ok " in lines["ais_dbm"]
    assert "FAILED" in lines["dbm_joint"]


def test_cpu_model_reads_cpuinfo_and_falls_back(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t: fpu\n")
    assert bench_all.cpu_model(info) == "AMD EPYC 9B14"
    assert bench_all.cpu_model(tmp_path / "missing")  # platform's answer, never empty


def test_numpy_peers_learn_and_stay_finite():
    """Each numpy peer runs an epoch, moves every parameter and keeps it finite."""
    import numpy_loops as nl

    rng = np.random.default_rng(0)
    x = (rng.random((300, 20)) < 0.3).astype("float32")
    y = rng.integers(0, 3, 300)
    loops = [nl.RBMLoop(20, 8), nl.RBMLoop(20, 8, pcd=True, chains=10),
             nl.RBMLoop(20, 8, visible_copies=2), nl.RBMLoop(20, 8, hidden_copies=2),
             nl.DBMLoop((20, 8, 6), chains=10), nl.DBMLoop((20, 8, 6), centering=False),
             nl.DBNLoop((20, 8, 7, 9), num_classes=3, k=2)]
    for loop in loops:
        loop.lr = 0.05
        before = [p.copy() for p in loop.params]
        seconds = nl.time_epochs(loop, x, None if not isinstance(loop, nl.DBNLoop) else y, 2)
        assert len(seconds) == 2 and min(seconds) > 0
        for p, q in zip(loop.params, before):
            assert np.all(np.isfinite(p)) and not np.array_equal(p, q)


def test_profile_rbm_step_runs_every_variant(tmp_path):
    """The step-profile script runs each variant and writes its best epochs (a smoke
    run on 300 rows; the timings themselves are not checked)."""
    import json

    import profile_rbm_step

    out = tmp_path / "profile.json"
    assert profile_rbm_step.main(["--n-rows", "300", "--rounds", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rows"] == 300
    assert list(result["best_s"]) == list(profile_rbm_step.VARIANTS)
    assert all(t > 0 for t in result["best_s"].values())


def test_median_round_keeps_each_cases_middle_round():
    rounds = [{"a": {"seconds": 5.0, "ratio": 1.5}, "b": {"seconds": 2.0}, "c": {"seconds": 1.0}},
              {"a": {"seconds": 3.0, "ratio": 1.1}, "b": {"error": "boom"}, "c": {"seconds": 4.0}},
              {"a": {"seconds": 4.0, "ratio": 1.3}, "b": {"seconds": 1.0}, "c": {"seconds": 2.0}}]
    merged = bench_all.median_round(rounds)
    assert merged["a"] == {"seconds": 4.0, "ratio": 1.3, "seconds_rounds": [5.0, 3.0, 4.0]}
    assert merged["b"] == {"error": "boom"}  # a failure in any round is not hidden
    assert merged["c"]["seconds"] == 2.0
    assert bench_all.median_round(rounds[:2])["a"]["seconds"] == 3.0  # the lower middle
    assert bench_all.median_round([{"x": {"seconds": 1.0}}]) == {"x": {"seconds": 1.0}}
    assert bench_all.median_round([{}]) == {}


def test_profile_steps_splits_a_trace_into_parts():
    """The op-level profile's arithmetic on a hand-made executor thread: an op's own
    time excludes the ops nested in it but keeps its shards; time outside every op is
    the executor's."""
    import profile_steps as ps

    events = [("ExecutorState::Process", 0, 100),
              ("up/MatMul:_MklMatMul", 10, 30), ("ParallelFor", 12, 26),
              ("cond/sgd/Mul:Mul", 50, 10),
              ("call:StatefulPartitionedCall", 62, 33), ("call/Sigmoid:Sigmoid", 70, 10)]
    own = dict(ps.self_times(events))
    assert own == {"ExecutorState::Process": 100 - 30 - 10 - 33, "up/MatMul:_MklMatMul": 30,
                   "cond/sgd/Mul:Mul": 10, "call:StatefulPartitionedCall": 23,
                   "call/Sigmoid:Sigmoid": 10}
    assert ps.part_of("up/MatMul", "_MklNativeFusedMatMul") == "products"
    assert ps.part_of("a/stateless_random_uniform", "StatelessRandomUniformV2") == "draws"
    assert ps.part_of("while/cond/sgd/Mul_1", "Mul") == "update"
    assert ps.part_of("while/AssignAddVariableOp", "AssignAddVariableOp") == "variables"
    assert ps.part_of("while/sgd_like_name", "Mul") == "other ops"
    assert ps.union_length([(0, 10), (5, 20), (30, 40)]) == 30


def test_profile_steps_runs_a_case(tmp_path):
    """The op-level profile runs one case under TensorFlow's profiler and accounts for
    its products (a smoke run on 300 rows; the shares themselves are not checked)."""
    import json

    import profile_steps

    out = tmp_path / "profile.json"
    assert profile_steps.main(["--case", "rbm_cd1", "--rows", "300", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["case"] == "rbm_cd1" and result["rows"] == 300
    assert list(result["parts_s"]) == list(profile_steps.PARTS)
    assert result["parts_s"]["products"] > 0 and result["parts_s"]["update"] > 0
    assert "_MklMatMul" in result["top_ops_s"] or "MatMul" in result["top_ops_s"]
