import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(items):
    """Tests marked `long` (half a minute or more on one worker) run first: `pytest -n auto` hands tests out in
    collection order, and a long test handed out last runs alone at the end while the other workers idle."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    import keras

    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()
    # What outlives a test (TensorFlow's graphs and caches held by modules and session fixtures: over a million
    # objects after a few dozen tests) is moved out of the garbage collector's sight, so that its collections
    # during the next tests scan only what those tests make (tests/test_models.py with test_layer_attended.py on
    # one worker, two interleaved rounds: 229 and 230 s before, 167 and 145 s after). The test's own garbage is
    # collected first.
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def digits():
    from lacnn_zoo.data import load_digits

    return load_digits(seed=0)


def random_batch(shape, n=8, num_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype("float32")
    y = rng.integers(0, num_classes, size=(n,)).astype("int32")
    return x, y


class EpochRecorder(keras.callbacks.Callback):
    """Records the epochs that begin (which epochs a resumed run trains)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)
