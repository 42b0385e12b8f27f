"""Progress bars for the long loops outside `fit`: Gibbs sampling and classification,
mean-field over many rows.

Their `verbose` argument follows Keras's: 0 is silent, 1 shows a
`keras.utils.Progbar` (2 prints one line at the end), and "auto" (the default) shows
one only when standard output is a terminal or a notebook, so logs and tests stay
clean.

A sampler shows progress by running its sweeps in chunks, a graph call each, between
updates of the bar. Its draws are keyed by their index in the seed's stream
(`tfboltz.samplers.SeedStream`), which the chunks carry on, so the samples are the
same as from one call.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

_MAX_CHUNKS = 100


def resolve_verbose(verbose):
    """The verbosity to use, 0, 1 or 2 (as `keras.utils.Progbar` takes it): "auto" is
    1 on a terminal or in a notebook, else 0.

    Raises:
        ValueError: `verbose` is not 0, 1, 2 or "auto".
    """
    if isinstance(verbose, str) and verbose == "auto":
        interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
        return int(interactive or "ipykernel" in sys.modules)
    if isinstance(verbose, (bool, int, np.integer)) and verbose in (0, 1, 2):
        return int(verbose)
    raise ValueError("Invalid value received for argument `verbose`. Expected 0, 1, 2 or "
                     f"'auto'. Received: verbose={verbose!r}")


def progbar(target, verbose, unit_name="step"):
    """A `keras.utils.Progbar` to `target` at the verbosity `verbose` (see
    `resolve_verbose`)."""
    return keras.utils.Progbar(target, verbose=resolve_verbose(verbose), unit_name=unit_name)


def run_sweeps(sweeps_fn, chains, steps, verbose=1, unit_name="sweep"):
    """Advance sampler chains by `steps` sweeps, in chunks, with a progress bar.

    Args:
        sweeps_fn: ``sweeps_fn(chains, n) -> chains``, `n` sweeps (an int32 tensor)
            from `chains`, carrying on the chains' stream of draws.
        chains: the chains before the first sweep.
        steps: the number of sweeps.
        verbose: the bar's verbosity (see `resolve_verbose`).
        unit_name: what the bar counts.

    Returns:
        The chains after `steps` sweeps.
    """
    bar = progbar(steps, verbose, unit_name)
    chunk = max(1, -(-steps // _MAX_CHUNKS))
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        chains = sweeps_fn(chains, tf.constant(n))
        # The call may return before an accelerator finishes: wait for it, so the bar
        # shows sweeps done rather than sweeps queued.
        np.asarray(tf.nest.flatten(chains)[-1])
        done += n
        bar.update(done)
    return chains
