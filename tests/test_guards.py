"""Classes of bug that a reviewer planted from outside and the suite first missed, each closed by a test that
fails with the planted bug: calibration drawn from the right split, reductions on non-square inputs, the input
channel count, ResNet v1 block taps, ownership, the lock re-check, the zoo's own temporaries, all-zero taps,
rematerialisation of the per-image attention loop."""

import os

import keras
import numpy as np
import pytest

from lacnn_zoo import build_model, layer_attended
from lacnn_zoo.io import (
    LOCK_NAME,
    FolderLock,
    ForeignFilesError,
    atomic_path,
    check_replaceable,
    is_owned,
    is_temporary,
    mark_owned,
)


def test_int8_calibration_images_come_from_the_training_split_only(digits):
    from export.quantize import load_quantization_data

    calibration, test_x, test_y, description = load_quantization_data(
        "digits", seed=0, calibration_images=64, preprocessing=digits.preprocessing)
    train_rows = {x.tobytes() for x in digits.train[0]}
    test_rows = {x.tobytes() for x in digits.test[0]} - train_rows
    assert len(calibration) == 64 and all(x.tobytes() in train_rows for x in calibration)
    assert not any(x.tobytes() in test_rows for x in calibration)
    np.testing.assert_array_equal(test_x, digits.test[0])  # the test split, whole, for the accuracy
    assert description["calibration_split"] == "train" and len(test_y) == len(digits.test[1])


def test_reductions_of_a_non_square_input_are_per_side():
    features = build_model("resnet8", input_shape=(16, 48, 3), include_top=False, features="stages")
    assert [i["reduction"] for i in features.feature_info] == [1, 2, 4]
    assert [tuple(o.shape[1:3]) for o in features.outputs] == [(16, 48), (8, 24), (4, 12)]


def test_input_shape_must_match_a_model_backbone_in_every_dimension():
    inputs = keras.Input((16, 16, 3))
    backbone = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c")(inputs))
    for shape in [(16, 16, 1), (16, 8, 3)]:
        with pytest.raises(ValueError, match="`input_shape`"):
            layer_attended(backbone, taps=["c"], input_shape=shape)
    layer_attended(backbone, taps=["c"], input_shape=(16, 16, 3))


def test_resnet_v1_block_taps_follow_the_join_to_its_activation():
    from lacnn_zoo.models.taps import select_taps

    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    names, maps = select_taps(backbone, "blocks")
    expected = [f"conv{s + 2}_block{b}_out" for s, n in enumerate([3, 4, 6, 3]) for b in range(1, n + 1)]
    assert names == expected  # the ReLU after each Add (He et al. 2016: the block output is after the addition)
    assert all(type(backbone.get_layer(n)).__name__ == "Activation" for n in names)


def test_ownership_needs_the_marker_or_the_signature_not_zoo_named_files(tmp_path):
    folder = tmp_path / "looks_like_a_run"
    folder.mkdir()
    for name in ("best.keras", "history.csv", "metrics.json"):  # zoo-like names, written by someone else
        (folder / name).write_text("not the zoo's")
    assert not is_owned(str(folder), "run", "run.json")
    with pytest.raises(ForeignFilesError, match="not a lacnn-zoo run"):
        check_replaceable(str(folder), "run", lambda name: True, "run.json")
    mark_owned(str(folder), "export")  # the marker of another kind does not make it a run
    assert not is_owned(str(folder), "run", "run.json") and is_owned(str(folder), "export", "manifest.json")
    mark_owned(str(folder), "run")
    assert is_owned(str(folder), "run", "run.json")
    assert sorted(check_replaceable(str(folder), "run", lambda name: True, "run.json")) == sorted(os.listdir(folder))


def test_the_lock_is_taken_on_the_file_that_is_there_after_a_replace(tmp_path, monkeypatch):
    import fcntl

    path = tmp_path / LOCK_NAME
    real_flock, calls = fcntl.flock, []

    def flock_after_a_replace(fd, operation):
        if not calls:  # another process removes and recreates the lock file between our open and our flock
            os.remove(path)
            path.write_text("")
        calls.append(fd)
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_replace)
    with FolderLock(str(path), "test") as lock:
        assert len(calls) == 2  # retried on the new file
        assert os.path.samestat(os.fstat(lock._fd), os.stat(path))
        assert path.read_text() == str(os.getpid())


@pytest.mark.parametrize("suffix", ["", ".keras", ".weights.h5"])
def test_the_zoos_own_temporaries_are_recognised_as_its_own(tmp_path, suffix):
    with atomic_path(tmp_path / f"best{suffix or '.json'}", suffix=suffix) as tmp:
        assert is_temporary(os.path.basename(tmp))
        open(tmp, "w").close()
    for name in ("best.keras", ".best.keras.tmp", "notes.abcdef12.lacnn-tmp", ".x.abcdef1.lacnn-tmp"):
        assert not is_temporary(name), name
    # The earlier version's tempfile names count only for a file the folder's owner writes.
    known = {"run.json", "best.keras"}.__contains__
    assert is_temporary(".run.json.k2j4h5g6.tmp", known) and is_temporary(".best.keras.k2j4h5g6.tmp.keras", known)
    assert not is_temporary(".notes.k2j4h5g6.tmp", known) and not is_temporary(".run.json.k2j4h5g6.tmp")


@pytest.mark.parametrize("mechanism,extra", [
    ("innate_static", {}), ("static_vector", {}), ("self_attention", {}),
    ("dynamic_recurrent", {"lstm_readout": "attention"}), ("dynamic_recurrent", {"lstm_readout": "final_state"}),
])
def test_all_zero_taps_give_uniform_finite_weights(mechanism, extra):
    model = build_model(f"lacnn_{mechanism}_tiny", **extra)
    layer = model.get_layer("layer_attention")
    taps = [keras.ops.zeros((3, int(t.shape[-1]))) for t in layer.input]
    weights = keras.ops.convert_to_numpy(layer.layer_weights(taps))
    assert np.isfinite(weights).all()
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-5)
    if mechanism != "self_attention":  # its layer embeddings tell zero taps apart by position, by design
        np.testing.assert_allclose(weights, np.full((3, len(taps)), 1 / len(taps)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("image_loop", [True, False])
def test_the_attention_loop_is_rematerialised_when_asked(monkeypatch, image_loop):
    from lacnn_zoo.layers import AugmentedConv2D

    wrapped = []
    real = keras.remat

    def counting_remat(fn):
        wrapped.append(fn.__name__)
        return real(fn)

    monkeypatch.setattr(keras, "remat", counting_remat)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    for remat in (True, False):
        wrapped.clear()
        layer = AugmentedConv2D(8, kernel_size=3, dk=4, dv=4, heads=2, relative=True, query_chunk=12,
                                rematerialize=remat, image_loop=image_loop)
        layer(x)
        if not remat:
            assert wrapped == []
        elif image_loop:
            assert wrapped == ["one_image"]  # each image's attention, under remat
        else:
            assert wrapped and set(wrapped) == {"attend"}  # each query block
