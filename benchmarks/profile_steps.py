"""Where each model's training epoch spends its time, op by op (TensorFlow's profiler).

    python benchmarks/profile_steps.py                          # every case, 60,000 rows
    python benchmarks/profile_steps.py --case dbm_joint --json profile.json
    python benchmarks/profile_steps.py --rows 6000               # a quick look

The cases are bench_all.py's, built the same way (`SGD(momentum=0.9)`, batches of 100,
the default `steps_per_execution`): rbm_cd1, rbm_pcd1, the two greedy RBMs of the DBM
(dbm_pretrain_1: 784-500 with doubled visible input, dbm_pretrain_2: 500-1000 with
doubled hidden input), dbm_joint (the zoo recipe's step) and dbn_updown. Each case runs
in its own process: one `fit` of three epochs, the first tracing the train function,
the second timed, the third under `tf.profiler.experimental`. From the profiler's trace
of the TensorFlow executor threads it sums each op's own time (its duration less that
of the ops nested in it) into five parts:

products      MatMul in every form oneDNN gives it (with a fused bias or activation too)
draws         the stateless random ops (Philox) behind every Bernoulli or Gaussian draw
update        the optimizer's ops (its name scope): the momentum-SGD update
variables     reading and assigning variables outside the optimizer (metrics, chains,
              centering offsets, step counters)
other ops     the rest: activations, the statistics, the batch check and divergence
              guard, reductions, concatenations, casts

and reports beside them the time no op was running on any executor thread ("between
ops": scheduling, the input pipeline, the epoch's callbacks in Python). The profiler
costs a little for every op, so the profiled epoch is slower than the timed one (both
are reported); two executor threads can run ops at once, so the parts can add up to
more than the epoch.
"""

import argparse
import collections
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

CASES = ("rbm_cd1", "rbm_pcd1", "dbm_pretrain_1", "dbm_pretrain_2", "dbm_joint",
         "dbn_updown")
PARTS = ("products", "draws", "update", "variables", "other ops")
_OPTIMIZER_SCOPE = re.compile(r"(^|/)(sgd|adam|adamw|rmsprop|optimizer)(_\d+)?/", re.I)


def part_of(node, op_type):
    """The part of the epoch an op belongs to, from its node name and type."""
    if "MatMul" in op_type:
        return "products"
    if op_type.startswith("StatelessRandom") or op_type.startswith("RandomUniform"):
        return "draws"
    if _OPTIMIZER_SCOPE.search(node):
        return "update"
    if "VariableOp" in op_type:
        return "variables"
    return "other ops"


def _is_op(name):
    return ":" in name and "::" not in name  # an op's event: "node/name:OpType"


def self_times(events):
    """``[(name, start, duration)]`` of one thread -> ``[(name, own time)]`` for the
    events that are ops or lie in no op: an op's own time is its duration less that of
    the ops nested in it (the other events nested in an op, such as its ParallelFor
    shards, are its own work); an event outside every op keeps its duration less that
    of everything nested in it."""
    events = sorted(events, key=lambda e: (e[1], -e[2]))
    stack, nested, inside_op = [], collections.defaultdict(int), set()
    for i, (name, start, duration) in enumerate(events):
        while stack and events[stack[-1]][1] + events[stack[-1]][2] <= start:
            stack.pop()
        ops_above = [j for j in stack if _is_op(events[j][0])]
        if ops_above:
            inside_op.add(i)
            if _is_op(name):
                nested[ops_above[-1]] += duration
        elif stack:
            nested[stack[-1]] += duration
        stack.append(i)
    return [(name, duration - nested[i]) for i, (name, _, duration) in enumerate(events)
            if _is_op(name) or i not in inside_op]


def union_length(intervals):
    """Total length covered by ``[(start, end)]``."""
    total, end = 0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def summarize(xplane_path, wall_s):
    """Seconds per part, the time between ops and the costliest ops of a trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(xplane_path).read_bytes())
    parts = dict.fromkeys(PARTS, 0)
    runtime = 0
    by_op = collections.Counter()
    op_intervals = []
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            events = [(names[e.metadata_id], line.timestamp_ns * 1000 + e.offset_ps,
                       e.duration_ps) for e in line.events]
            for name, own in self_times(events):
                if _is_op(name):
                    node, op_type = name.rsplit(":", 1)
                    parts[part_of(node, op_type)] += own
                    by_op[op_type] += own
                else:
                    runtime += own
            op_intervals += [(s, s + d) for name, s, d in events if _is_op(name)]
    wall_ps = wall_s * 1e12
    ps = 1e-12
    return {"parts_s": {k: v * ps for k, v in parts.items()},
            "executor_s": runtime * ps,
            "between_ops_s": max(wall_ps - union_length(op_intervals), 0) * ps,
            "top_ops_s": {k: v * ps for k, v in by_op.most_common(12)}}


def build(case, x, y):
    """The case's model, built and compiled by bench_all.py's builders, and its data."""
    import bench_all as bench

    if case in ("rbm_cd1", "rbm_pcd1"):
        model = bench.new_rbm(784, 1024, learning="pcd" if case == "rbm_pcd1" else "cd")
    elif case == "dbm_pretrain_1":
        model = bench.new_rbm(784, 500, visible_copies=2)
    elif case == "dbm_pretrain_2":
        model, x = bench.new_rbm(500, 1000, hidden_copies=2), bench.second_rbm_rows(x)
    elif case == "dbm_joint":
        model = bench.new_dbm()
    elif case == "dbn_updown":
        model = bench.new_dbn()
    else:
        raise ValueError(f"Unknown case {case!r}. Expected one of {CASES}.")
    return model, (x, y if case == "dbn_updown" else None)


def profile_case(case, x, y):
    """One `fit` of three epochs: the first traces, the second is timed, the third runs
    under the profiler (each timed from its first to its last batch, as bench_all.py
    times epochs)."""
    import keras
    import tensorflow as tf

    model, (xs, ys) = build(case, x, y)
    log = tempfile.mkdtemp()

    class Epochs(keras.callbacks.Callback):
        seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                tf.profiler.experimental.start(log)
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)
            if epoch == 2:
                tf.profiler.experimental.stop()

    model.fit(xs, ys, batch_size=100, epochs=3, verbose=0, callbacks=[Epochs()])
    (trace,) = glob.glob(os.path.join(log, "**", "*.xplane.pb"), recursive=True)
    summary = summarize(trace, Epochs.seconds[2])
    shutil.rmtree(log, ignore_errors=True)
    return {"case": case, "rows": len(xs), "epoch_s": Epochs.seconds[1],
            "profiled_epoch_s": Epochs.seconds[2], **summary}


def report(result):
    lines = [f"{result['case']}: {result['rows']} rows, epoch {result['epoch_s']:.2f} s "
             f"({result['profiled_epoch_s']:.2f} s profiled)"]
    total = sum(result["parts_s"].values())
    for part, seconds in result["parts_s"].items():
        lines.append(f"  {part:<12}{seconds:>8.2f} s  {100 * seconds / total:>5.1f}% of op time")
    lines.append(f"  {'executor':<12}{result['executor_s']:>8.2f} s  (TensorFlow's own events)")
    lines.append(f"  {'between ops':<12}{result['between_ops_s']:>8.2f} s  (no op running)")
    lines.append("  costliest op types: " + ", ".join(
        f"{k} {v:.2f}" for k, v in result["top_ops_s"].items()))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--rows", type=int, default=60000, help="MNIST training rows (default all)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.data is not None:  # a child: one case
        with np.load(args.data) as d:
            result = profile_case(args.case[0], d["x"], d["y"])
        args.json.write_text(json.dumps(result))
        return 0
    import subprocess

    import tfboltz as tb

    x, y = tb.data.load_mnist("train")
    x, y = x[: args.rows], y[: args.rows]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mnist.npz"
        np.savez(data, x=x, y=y)
        for case in args.case:
            out = Path(tmp) / f"{case}.json"
            proc = subprocess.run([sys.executable, __file__, "--case", case, "--data",
                                   str(data), "--json", str(out)], capture_output=True, text=True)
            if proc.returncode:
                print(f"{case} failed:\n{(proc.stdout + proc.stderr)[-2000:]}", flush=True)
                continue
            results.append(json.loads(out.read_text()))
            print(report(results[-1]), flush=True)
    if args.json:
        from tfboltz.cli import write_json

        write_json(args.json, {"rows": len(x), "results": results})
    return 0 if len(results) == len(args.case) else 1


if __name__ == "__main__":
    sys.exit(main())
