import time

import numpy as np
import pytest

from lacnn_zoo.data import DatasetNotAvailableError, load_dataset, load_digits


def test_digits_split_is_stratified_deterministic_and_disjoint():
    a, b = load_digits(seed=3), load_digits(seed=3)
    np.testing.assert_array_equal(a.train[0], b.train[0])
    sizes = [len(s[1]) for s in (a.train, a.validation, a.test)]
    assert sum(sizes) == 1797 and sizes[2] == 360
    for split in (a.train, a.validation, a.test):
        counts = np.bincount(split[1], minlength=10) / len(split[1])
        assert np.all(np.abs(counts - 0.1) < 0.03)  # every class in every split, ~10% each
    flat = {tuple(r) for r in a.train[0].reshape(len(a.train[0]), -1).round(4)}
    test_rows = [tuple(r) for r in a.test[0].reshape(360, -1).round(4)]
    # scikit-learn's digits contain a few exact duplicate images; the splits must not share more than those.
    assert sum(r in flat for r in test_rows) < 10
    assert a.train[0].shape[1:] == (8, 8, 1) and a.train[0].dtype == np.float32
    # Standardised with training statistics, which the record keeps for deployment.
    assert abs(float(a.train[0].mean())) < 1e-5 and abs(float(a.train[0].std()) - 1) < 1e-4
    raw = a.train[0] * a.preprocessing["std"][0] + a.preprocessing["mean"][0]
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert load_digits(seed=4).train[1].tolist() != a.train[1].tolist()


def test_tfds_loading_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=40):
        data = load_dataset("cifar10", batch_size=8, augment=True)
        assert data.input_shape == (32, 32, 3) and data.num_classes == 10
        x, y = next(iter(data.train))
        assert tuple(x.shape) == (8, 32, 32, 3) and x.dtype.name == "float32"
        assert int(np.max(y)) < 10
        resized = load_dataset("mnist", batch_size=4, image_size=(12, 16))
        x, _ = resized.sample(5, split="test")
        assert x.shape == (5, 12, 16, 1) and resized.preprocessing["resize"] == [12, 16]


def test_missing_tfds_data_fails_fast_with_instructions(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DatasetNotAvailableError, match=r"not prepared.*data_dir.*download=True"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    assert time.perf_counter() - start < 30  # never the ~200 s network time-out


def test_bad_dataset_arguments():
    with pytest.raises(ValueError, match="Unknown TFDS data set"):
        load_dataset("definitely_not_a_dataset")
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("")
    with pytest.raises(ValueError, match="augment"):
        load_dataset("digits", augment=True)


def test_tfds_set_without_test_split_carves_it_from_train(tmp_path):
    """A prepared TFDS set with only a 'train' split (like tf_flowers): test and validation come from its tail."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    images = np.arange(50, dtype="uint8")[:, None, None, None] * np.ones((1, 4, 4, 1), "uint8")
    labels = np.arange(50) % 3
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(4, 4, 1)),
        "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
    })
    tfds.dataset_builders.store_as_tfds_dataset(
        name="only_train_set", version="1.0.0", features=features, data_dir=str(tmp_path), disable_shuffling=True,
        split_datasets={"train": tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})})
    data = load_dataset("only_train_set", data_dir=str(tmp_path), batch_size=8)
    ids = {}
    for split in ("train", "validation", "test"):
        x, _ = data.sample(100, split=split)
        raw = x * data.preprocessing["std"][0] + data.preprocessing["mean"][0]
        ids[split] = set(np.round(raw[:, 0, 0, 0] * 255).astype(int).tolist())  # each image's pixel is its index
    assert ids == {"train": set(range(35)), "validation": set(range(35, 40)), "test": set(range(40, 50))}
    assert data.preprocessing["class_names"] == ["a", "b", "c"]
    explicit = load_dataset("only_train_set", data_dir=str(tmp_path), test_split="train[:10%]", batch_size=8)
    x, _ = explicit.sample(100, split="test")
    assert len(x) == 5
    with pytest.raises(ValueError, match=r"no split test_split='validation'; it has \['train'\]"):
        load_dataset("only_train_set", data_dir=str(tmp_path), test_split="validation")
    with pytest.raises(ValueError, match="no split train_split='extra'"):
        load_dataset("only_train_set", data_dir=str(tmp_path), train_split="extra")
