"""Training under a `tf.distribute` strategy: which replica a step runs on, its share of
the persistent chains, and the seeds it draws from.

Replica ``r`` of ``R`` owns rows ``[r n / R, (r + 1) n / R)`` of every persistent-chain
variable; after an update the shares are gathered back in replica order (see
`EnergyModel.apply_if_finite`), so the variable holds every chain, identical on every
device, and saves as usual.
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
