"""Private names of Keras that the zoo relies on, in one place, each with a test in tests/test_compat.py that fails
when a Keras release changes it (setup.cfg also bounds keras below its next major version).

* `global_state` "object_name_uids": Keras' counters of automatic layer names (`activation`, `activation_18`).
  `fresh_layer_names` builds a backbone as in a fresh session, so its automatic names, the names of its taps,
  the monitor's CSV columns and the report's labels are the same in every build of one process.
* `global_state` "uninitialized_variables": the variables a `StatelessScope(initialize_variables=False)` defers;
  `deferred_variables_dropped` forgets the ones a parameter count created, so no later scope allocates them.
"""

import collections
import contextlib

from keras.src.backend.common import global_state

__all__ = ["deferred_variables_dropped", "fresh_layer_names"]

_NAME_COUNTERS = "object_name_uids"
_DEFERRED = "uninitialized_variables"


@contextlib.contextmanager
def fresh_layer_names():
    """Automatic layer names inside the block start from scratch (`activation`, `activation_1`, ...); after it, the
    process's counters continue above every name used inside or before, so no later layer repeats one."""
    before = global_state.get_global_attribute(_NAME_COUNTERS) or {}
    global_state.set_global_attribute(_NAME_COUNTERS, collections.defaultdict(int))
    try:
        yield
    finally:
        inside = global_state.get_global_attribute(_NAME_COUNTERS) or {}
        merged = collections.defaultdict(int, before)
        for name, count in inside.items():
            merged[name] = max(merged[name], count)
        global_state.set_global_attribute(_NAME_COUNTERS, merged)


@contextlib.contextmanager
def deferred_variables_dropped():
    """Variables deferred inside the block (under `keras.StatelessScope(initialize_variables=False)`) are never
    initialised later: Keras' list of variables to initialise is put back as it was before."""
    pending = list(global_state.get_global_attribute(_DEFERRED) or [])
    try:
        yield
    finally:
        global_state.set_global_attribute(_DEFERRED, pending)
