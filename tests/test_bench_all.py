"""The all-model benchmark's own arithmetic (not a timing test): product counting,
the products-only loop and the table."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location(
    "bench_all", Path(__file__).parents[1] / "benchmarks" / "bench_all.py")
bench_all = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_all)


def test_product_lists_and_flop():
    cd = bench_all.rbm_products(784, 1024, 100)
    assert len(cd) == 4 and cd[-1] == (784, 200, 1024, True, False)
    assert bench_all.flop(cd, 600) == pytest.approx(
        2 * 600 * (3 * 100 * 784 * 1024 + 784 * 200 * 1024))
    dbm = bench_all.dbm_products(n_mf=10)
    assert len(dbm) == 2 + 2 * 10 + 4 + 2 + 1
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
    }
    text = bench_all.table(results, {"sklearn": {"seconds": 10.0}})
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert " ok " in lines["rbm_cd1"] and "sklearn 10.00 s (0.30x)" in lines["rbm_cd1"]
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
