"""Layers use keras.ops only: every registered model, saved under TensorFlow, predicts the same under JAX."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from lacnn_zoo import build_model, list_models
from lacnn_zoo.batchnorm import calibrate_batchnorm
from test_models import smallest_shape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JAX_CHECK = """
import sys, numpy as np, keras
import lacnn_zoo.layers, lacnn_zoo.layers.layer_attention
assert keras.backend.backend() == "jax"
folder, names = sys.argv[1], sys.argv[2:]
worst = {}
for name in names:
    model = keras.saving.load_model(f"{folder}/{name}.keras")
    x = np.load(f"{folder}/{name}.x.npy")
    expected = np.load(f"{folder}/{name}.y.npy")
    got = np.asarray(model(x, training=False))
    scale = np.abs(expected).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - expected) <= 1e-5 + 1e-4 * scale), (name, float(np.abs(got - expected).max()))
    worst[name] = float(np.abs(got - expected).max())
print("JAX-PARITY", len(worst), max(worst.values()))
"""


def test_every_model_predicts_the_same_on_jax(tmp_path):
    pytest.importorskip("jax")
    names = list_models()
    rng = np.random.default_rng(0)
    for name in names:
        keras.backend.clear_session()
        shape = smallest_shape(name)
        model = build_model(name, input_shape=shape)
        x = rng.normal(size=(4, *shape)).astype("float32")
        calibrate_batchnorm(model, x)
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.x.npy", x)
        np.save(tmp_path / f"{name}.y.npy", keras.ops.convert_to_numpy(model(x, training=False)))
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", JAX_CHECK, str(tmp_path), *names], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"JAX-PARITY {len(names)}" in out.stdout
