"""The private Keras names of lacnn_zoo.compat still mean what the zoo relies on: each test fails when a Keras
release renames or changes one (then fix compat.py, not its callers)."""

import keras
from keras.src.backend.common import global_state

import lacnn_zoo
from lacnn_zoo import compat


def test_keras_counts_automatic_names_where_compat_resets_them():
    keras.layers.Activation("relu")
    counters = global_state.get_global_attribute(compat._NAME_COUNTERS)
    assert counters and counters["activation"] >= 1  # the attribute Keras names layers from
    with compat.fresh_layer_names():
        inside = [keras.layers.Activation("relu").name for _ in range(2)]
    after = keras.layers.Activation("relu").name
    assert inside == ["activation", "activation_1"]  # as in a fresh session
    assert after not in inside and after.startswith("activation_")  # the counters continue above both


def test_an_application_backbone_taps_the_same_names_in_every_build():
    """The issue's case: MobileNetV3Small's stage taps were `activation` then `activation_18` in one process."""
    names = []
    for _ in range(2):
        model = lacnn_zoo.layer_attended("MobileNetV3Small", taps="stages", input_shape=(32, 32, 3))
        names.append(lacnn_zoo.tap_names(model))
    keras.layers.Activation("relu")  # layers built in between must not shift the next build's names
    model = lacnn_zoo.layer_attended("MobileNetV3Small", taps="stages", input_shape=(32, 32, 3))
    names.append(lacnn_zoo.tap_names(model))
    assert names[0] == names[1] == names[2] and len(names[0]) >= 4
    assert any(n.startswith("activation") for n in names[0])  # an automatic name among them: the case at stake
    assert len({layer.name for layer in model.layers}) == len(model.layers)  # head and backbone names unique


def test_keras_defers_variables_in_the_list_compat_restores():
    before = list(global_state.get_global_attribute(compat._DEFERRED) or [])
    with keras.StatelessScope(initialize_variables=False):
        keras.layers.Dense(2).build((None, 3))  # kernel and bias, deferred
    grown = list(global_state.get_global_attribute(compat._DEFERRED) or [])
    assert len(grown) == len(before) + 2  # Keras keeps the deferred variables there
    global_state.set_global_attribute(compat._DEFERRED, list(before))
    with compat.deferred_variables_dropped(), keras.StatelessScope(initialize_variables=False):
        keras.layers.Dense(2).build((None, 3))
    assert list(global_state.get_global_attribute(compat._DEFERRED) or []) == before
