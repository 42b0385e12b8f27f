"""Training under a `tf.distribute` strategy: which replica a step runs on, its share of
the persistent chains and of the global batch, and the seeds it draws from.

Replica ``r`` of ``R`` owns rows ``[r n / R, (r + 1) n / R)`` of every persistent-chain
variable (``n = n_chains`` must be divisible by ``R``: `check_chain_variables`, which
`fit` runs before anything changes). Its negative phase samples only its share, and
`all_chains` gathers every replica's share before the statistics, so the negative
phase is that of the whole model on every replica. Its positive phase covers its rows
of the global batch, which Keras splits as it likes (unevenly, and a last batch smaller
than ``R`` leaves some replicas none; `first_local_batch` works around Keras 3's
build on such a batch): `EnergyModel._apply_if_finite` weighs each replica's gradient
by its share of the global rows (`merge_replicas`), so the update is the single-device
update on the global batch, and gathers the chain shares back in replica order, so the
variable holds every chain, identical on every device, and saves as usual.

All of this goes through collective operations of the replica context (`all_reduce`,
`all_gather`), so it holds across machines too: under
`tf.distribute.MultiWorkerMirroredStrategy` the replicas of every worker form one
group (with one workaround for Keras 3, `multi_worker_logs`, which `EnergyModel`
applies). A collective waits for every worker. One that dies is noticed at once (its
connection closes) or within about ten seconds (its heartbeats stop), and the others
fail with `tf.errors.UnavailableError`.
One that lives on without reaching the collective (stuck in its input pipeline or a
callback) keeps the others waiting forever, unless the strategy bounds the wait:
then they fail with `tf.errors.DeadlineExceededError` ("Collective has timed out")
after that many seconds. 30 seconds leaves room for a worker to trace a train function
while its peers wait at the first collective:

    >>> options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=30)
    >>> strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)

`tests/test_distribute_multiworker.py` trains an RBM and a DBM with two such workers
on 127.0.0.1, then kills one (the other fails in about 2 s) or stalls one in a
callback (the other fails after the 30 s).
"""

import keras
import tensorflow as tf


def replica_context():
    """The replica context of a step under a `tf.distribute` strategy (one replica
    included: its optimizer still merges across replicas), else None."""
    if not tf.distribute.has_strategy():
        return None
    return tf.distribute.get_replica_context()


def is_distributed(strategy):
    """True for any strategy but TensorFlow's default one."""
    with strategy.scope():
        return tf.distribute.has_strategy()


def step_seed(generator):
    """`generator`, or under a multi-replica strategy a view of it that folds in the
    replica's id, so that replicas draw different noise from one shared state."""
    ctx = replica_context()
    return generator if ctx is None else ReplicaSeed(generator, ctx.replica_id_in_sync_group)


def chain_share(chains, name="n_chains"):
    """This replica's rows of persistent `chains` (all of them without a strategy)."""
    ctx = replica_context()
    if ctx is None:
        return chains
    n, replicas = int(chains.shape[0]), ctx.num_replicas_in_sync
    check_chain_split(n, replicas, name)
    share = n // replicas
    start = tf.cast(ctx.replica_id_in_sync_group, "int32") * share
    return tf.slice(chains, tf.stack([start, 0]), [share, -1])


def all_chains(*shares):
    """Every replica's `shares` (states of its `chain_share`), stacked in replica order:
    the states of all the chains, the same on every replica (`shares` without a
    strategy). Returns a list, one tensor per share."""
    ctx = replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return list(shares)
    return list(ctx.all_gather(list(shares), axis=0))


def merge_replicas(rows, ok, state=(), merge=()):
    """What the replicas of a train step agree on, from the replica context.

    Args:
        rows: rows of the global batch on this replica (possibly 0).
        ok: whether this replica's step is good; a replica without rows has nothing
            to refuse and counts as good.
        state: tensors to merge across replicas.
        merge: for each entry of `state`, "concat" (chain shares, stacked in replica
            order) or "mean" (a statistic of the replica's rows: the mean over
            replicas weighted by their rows, which is the statistic of the global
            batch).

    Returns:
        ``(share, all_ok, merged)``: this replica's share of the global rows
        (``rows / global rows``, the weight of its gradient), whether every replica's
        step is good, and the merged `state` (the same on every replica).
    """
    ctx = replica_context()
    rows = tf.cast(rows, "float32")
    has_rows = rows > 0
    ok = tf.logical_or(ok, tf.logical_not(has_rows))
    # A replica without rows has NaN means (0 / 0): select, do not multiply, them away.
    weighted = [tf.where(has_rows, t * rows, tf.zeros_like(t))
                for t, how in zip(state, merge) if how != "concat"]
    total, bad, *sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                       [rows, 1.0 - tf.cast(ok, "float32"), *weighted])
    concats = [t for t, how in zip(state, merge) if how == "concat"]
    gathered = iter(ctx.all_gather(concats, axis=0) if concats else [])
    means = iter([s / total for s in sums])
    merged = [next(gathered) if how == "concat" else next(means) for how in merge]
    return rows / total, tf.equal(bad, 0.0), merged


def merge_faults(fault):
    """Every replica's `StochasticUnits.batch_fault` ``[code, min, max]`` merged: the
    largest code, the smallest min, the largest max (a replica without rows has code
    0, min +inf, max -inf). From the replica context; the same on every replica."""
    ctx = replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return fault
    every = ctx.all_gather(fault[None], axis=0)
    return tf.stack([tf.reduce_max(every[:, 0]), tf.reduce_min(every[:, 1]),
                     tf.reduce_max(every[:, 2])])


def first_local_batch(strategy, iterator):
    """The first batch of a Keras epoch `iterator` as the first local replica holds it:
    what Keras needs to build a model (structure, dtypes, row width), where its own
    average over the replicas fails on a batch split unevenly."""
    for _, _, batches in iterator:
        return tf.nest.map_structure(lambda x: strategy.experimental_local_results(x)[0],
                                     next(batches))
    return None


def multi_worker_logs(step_function, strategy):
    """`step_function`, whose scalar logs get an axis of length 1 when `strategy` spans
    several workers: Keras 3 then averages a step's logs over the replicas along axis 0,
    which a scalar lacks (tensorflow/tensorflow#72388); the average is a scalar again."""
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)):
        return step_function

    def step(data):
        return tf.nest.map_structure(
            lambda t: tf.reshape(t, [1]) if t.shape.rank == 0 else t, step_function(data))

    return step


def persistent_chain_variables(model):
    """The variables of `model` that hold persistent chains: an RBM's
    `persistent_chains` (PCD, PT), a DBM's `particles`. Each holds `n_chains` chains
    (ladders, with tempering)."""
    chains = getattr(model, "persistent_chains", None)
    return ([] if chains is None else [chains]) + list(getattr(model, "particles", []))


def check_chain_variables(model, replicas):
    """Raise a `ValueError` unless every persistent-chain variable of `model` splits
    evenly over `replicas` (see `check_chain_split`)."""
    if replicas > 1 and persistent_chain_variables(model):
        check_chain_split(model.n_chains, replicas)


def check_chain_split(n, replicas, name="n_chains"):
    """Raise a `ValueError` unless `n` chains split evenly over `replicas`."""
    if n % replicas:
        raise ValueError(f"Expected `{name}` divisible by the number of replicas "
                         f"({replicas}), so that each keeps an equal share of the "
                         f"persistent chains. Received: {name}={n}")


class ReplicaSeed(keras.random.SeedGenerator):
    """A replica's view of a shared `SeedGenerator`: draws advance the shared state and
    fold in the replica id (a Keras random op accepts it as its `seed`)."""

    def __init__(self, base, replica_id):  # no state of its own: no super().__init__
        self.base = base
        self.replica_id = replica_id

    def next(self, ordered=True):
        seed = self.base.next(ordered)
        offset = tf.cast(self.replica_id, seed.dtype) * tf.constant(1_000_003, seed.dtype)
        return seed + tf.stack([offset, tf.zeros_like(offset)])
