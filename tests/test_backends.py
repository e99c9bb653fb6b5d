"""Every registered model, saved under TensorFlow, loads in a fresh process after `import lacnn_zoo` alone and
predicts the same there: under TensorFlow, and (layers use keras.ops only) under JAX and PyTorch.

JAX is in the test extra, so CI runs that check; PyTorch runs where it is installed
(e.g. `pip install torch==2.13.0`, the CPU build) and is skipped otherwise.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from test_models import NARROWER, smallest_shape

from lacnn_zoo import build_model, list_models
from lacnn_zoo.layers.batchnorm import calibrate_batchnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BACKEND_CHECK = """
import sys, numpy as np, keras
import lacnn_zoo  # the only import a user needs: it registers every class of the zoo
backend, folder, names = sys.argv[1], sys.argv[2], sys.argv[3:]
assert keras.backend.backend() == backend
worst = {}
for name in names:
    path = f"{folder}/{name}.keras"
    model = lacnn_zoo.load_model(path) if len(worst) % 2 else keras.saving.load_model(path)
    x = np.load(f"{folder}/{name}.x.npy")
    expected = np.load(f"{folder}/{name}.y.npy")
    got = keras.ops.convert_to_numpy(model(x, training=False))
    scale = np.abs(expected).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - expected) <= 1e-5 + 1e-4 * scale), (name, float(np.abs(got - expected).max()))
    worst[name] = float(np.abs(got - expected).max())
print("PARITY", len(worst), max(worst.values()))
"""


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Every registered model saved under TensorFlow with its predictions on a fixed batch."""
    folder = tmp_path_factory.mktemp("models")
    names = list_models()
    rng = np.random.default_rng(0)
    for name in names:
        keras.backend.clear_session()
        shape = smallest_shape(name)
        model = build_model(name, input_shape=shape, **NARROWER.get(name, {}))
        x = rng.normal(size=(4, *shape)).astype("float32")
        calibrate_batchnorm(model, x)
        model.save(folder / f"{name}.keras")
        np.save(folder / f"{name}.x.npy", x)
        np.save(folder / f"{name}.y.npy", keras.ops.convert_to_numpy(model(x, training=False)))
    return folder, names


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_every_model_predicts_the_same_in_a_fresh_process(backend, saved_models):
    pytest.importorskip(backend)
    folder, names = saved_models
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", BACKEND_CHECK, backend, str(folder), *names], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"PARITY {len(names)}" in out.stdout
