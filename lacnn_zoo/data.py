"""Data sets: the embedded handwritten digits (default) and named TFDS image-classification sets.

Preprocessing (scaling, standardisation, resizing, augmentation) happens here,
OUTSIDE the model, so exported models stay free of it; `DataSplits.preprocessing`
records what a deployed model expects: `x = (raw * scale - mean) / std`.

The digits come from scikit-learn's bundled copy (1797 scanned 8x8 digits, values
0..16) and need no network.  TFDS sets load with `download=False` unless asked:
without prepared data the error comes at once and says what to do.
"""

import dataclasses

import numpy as np

from lacnn_zoo.errors import ZooError
from lacnn_zoo.validation import check_positive_int, check_unit_interval


@dataclasses.dataclass
class DataSplits:
    """Train / validation / test splits and what a model needs to know about them.

    `train`, `validation` and `test` are either `(x, y)` NumPy tuples (embedded
    sets; these work on every Keras backend) or batched `tf.data.Dataset`s of
    `(image, label)` (TFDS sets, TensorFlow backend).
    """

    name: str
    train: object
    validation: object
    test: object
    input_shape: tuple
    num_classes: int
    preprocessing: dict

    @property
    def is_numpy(self):
        return isinstance(self.train, tuple)

    def sample(self, n=32, split="validation"):
        """A fixed batch `(x, y)` of at most n examples as NumPy arrays."""
        data = getattr(self, split)
        if isinstance(data, tuple):
            return data[0][:n], data[1][:n]
        xs, ys, count = [], [], 0
        for x, y in data:
            xs.append(np.asarray(x))
            ys.append(np.asarray(y))
            count += len(xs[-1])
            if count >= n:
                break
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def _standardise(x, mean, std):
    return ((x - mean) / std).astype("float32")


def load_digits(*, seed=0, validation_fraction=0.1, test_fraction=0.2):
    """scikit-learn's handwritten digits as (N, 8, 8, 1) float32, stratified split with a fixed seed."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    check_unit_interval("validation_fraction", validation_fraction, open_right=True)
    check_unit_interval("test_fraction", test_fraction, open_right=True)
    if validation_fraction <= 0 or test_fraction <= 0 or validation_fraction + test_fraction >= 0.9:
        raise ValueError(
            "`validation_fraction` and `test_fraction` must be positive and leave at least 10% for training; "
            f"received validation_fraction={validation_fraction!r}, test_fraction={test_fraction!r}."
        )
    digits = sk_load_digits()
    scale = 1.0 / 16.0
    x = digits.images.astype("float32")[..., None] * scale
    y = digits.target.astype("int32")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=validation_fraction / (1 - test_fraction), stratify=y_rest, random_state=seed
    )
    mean = x_train.mean(axis=(0, 1, 2))
    std = x_train.std(axis=(0, 1, 2))
    return DataSplits(
        name="digits",
        train=(_standardise(x_train, mean, std), y_train),
        validation=(_standardise(x_val, mean, std), y_val),
        test=(_standardise(x_test, mean, std), y_test),
        input_shape=(8, 8, 1),
        num_classes=10,
        preprocessing={"scale": scale, "mean": mean.tolist(), "std": std.tolist(), "resize": None},
    )


class DatasetNotAvailableError(ZooError):
    """A TFDS set that is not prepared locally and was not allowed to download."""


def load_tfds(
    name,
    *,
    seed=0,
    batch_size=64,
    data_dir=None,
    download=False,
    image_size=None,
    augment=False,
    validation_fraction=0.1,
    test_split="test",
    stats_examples=2000,
):
    """Load a TFDS image-classification set as batched tf.data pipelines.

    Args:
        name: a TFDS name with `image` and `label` features (cifar10, mnist, ...).
        data_dir: where prepared TFDS data lives (TFDS' default when None).
        download: allow TFDS to download and prepare (needs network).
        image_size: `(height, width)` to resize to, or None to keep the native size.
        augment: random crop (padding of 1/8 of the size) and horizontal flip on training data.
        validation_fraction: the tail of the `train` split held out for validation.
        test_split: the split used for the final test accuracy.
        stats_examples: training images used to estimate the per-channel mean/std.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    check_positive_int("batch_size", batch_size)
    check_unit_interval("validation_fraction", validation_fraction, open_right=True)
    if not 0 < validation_fraction < 1:
        raise ValueError(f"`validation_fraction` must be in (0, 1); received {validation_fraction!r}.")
    cut = round(100 * (1 - validation_fraction))
    splits = (f"train[:{cut}%]", f"train[{cut}%:]", test_split)
    try:
        (train, val, test), info = tfds.load(
            name, split=list(splits), data_dir=data_dir, download=download, as_supervised=True, with_info=True
        )
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"Unknown TFDS data set name={name!r}; see tfds.list_builders().") from e
    except AssertionError as e:
        where = data_dir or "TFDS' default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
        raise DatasetNotAvailableError(
            f"TFDS data set {name!r} is not prepared in {where}. Either pass data_dir=<folder where it was "
            f"prepared>, or download=True (--download on the command line) on a machine with network access, "
            f"or prepare it once with `tfds build {name}`."
        ) from e

    features = info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"TFDS set {name!r} has no 'image'/'label' features; it is not an image-classification set.")
    num_classes = features["label"].num_classes
    native = tuple(features["image"].shape)
    channels = native[-1]
    if image_size is not None:
        image_size = tuple(check_positive_int("image_size", s) for s in image_size)
        if len(image_size) != 2:
            raise ValueError(f"`image_size` must be (height, width); received image_size={image_size!r}.")
    elif native[0] is None or native[1] is None:
        raise ValueError(f"TFDS set {name!r} has images of varying size; pass image_size=(height, width).")
    height, width = image_size or native[:2]
    scale = 1.0 / 255.0

    def to_float(image, label):
        image = tf.cast(image, tf.float32) * scale
        if image_size is not None:
            image = tf.image.resize(image, (height, width))
        return image, tf.cast(label, tf.int32)

    sample = np.stack([x.numpy() for x, _ in train.take(stats_examples).map(to_float)])
    mean = sample.mean(axis=(0, 1, 2)).astype("float32")
    std = np.maximum(sample.std(axis=(0, 1, 2)), 1e-6).astype("float32")

    def normalise(image, label):
        return (image - mean) / std, label

    def augment_fn(image, label):
        pad_h, pad_w = max(1, height // 8), max(1, width // 8)
        image = tf.image.resize_with_crop_or_pad(image, height + 2 * pad_h, width + 2 * pad_w)
        image = tf.image.random_crop(image, (height, width, channels), seed=seed)
        image = tf.image.random_flip_left_right(image, seed=seed)
        return image, label

    autotune = tf.data.AUTOTUNE
    train = train.map(to_float, num_parallel_calls=autotune).shuffle(10_000, seed=seed)
    if augment:
        train = train.map(augment_fn, num_parallel_calls=autotune)

    def finish(ds):
        return ds.map(normalise, num_parallel_calls=autotune).batch(batch_size).prefetch(autotune)

    return DataSplits(
        name=name,
        train=finish(train),
        validation=finish(val.map(to_float, num_parallel_calls=autotune)),
        test=finish(test.map(to_float, num_parallel_calls=autotune)),
        input_shape=(height, width, channels),
        num_classes=num_classes,
        preprocessing={
            "scale": scale,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "resize": None if image_size is None else [height, width],
        },
    )


def load_dataset(name="digits", *, seed=0, batch_size=64, **tfds_kwargs):
    """`"digits"` (embedded, no network) or any TFDS image-classification name."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"`dataset` must be 'digits' or a TFDS name such as 'cifar10'; received {name!r}.")
    if name == "digits":
        if tfds_kwargs.get("augment"):
            raise ValueError("`augment` applies to TFDS sets; the embedded digits are used as scanned.")
        return load_digits(seed=seed)
    return load_tfds(name, seed=seed, batch_size=batch_size, **tfds_kwargs)
