"""Data sets: the embedded handwritten digits (default), named TFDS image-classification sets, and
folders of the user's own images (one subfolder per class).

Preprocessing (scaling, standardisation, resizing, augmentation) happens here,
OUTSIDE the model, so exported models stay free of it; `DataSplits.preprocessing`
records what a deployed model expects: `x = (raw * scale - mean) / std` (with the channels reversed
first when `channel_order` is "BGR"). The mean and std are the training images' own, or a backbone's
convention (`normalization`, e.g. `lacnn_zoo.models.backbones.input_convention("ResNet50V2")`).

The digits come from scikit-learn's bundled copy (1797 scanned 8x8 digits, values
0..16) and need no network.  TFDS sets load with `download=False` unless asked:
without prepared data the error comes at once and says what to do.
"""

import dataclasses
import os
import warnings

import numpy as np

from lacnn_zoo.errors import ZooError, spell
from lacnn_zoo.validation import check_finite, check_positive_int, check_unit_interval


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
    sizes: dict = None  # images per split, {"train": n, "validation": n, "test": n}, where known

    @property
    def is_numpy(self):
        return isinstance(self.train, tuple)

    def size(self, split):
        """Images in `split`: counted for arrays, recorded by the loader for pipelines (None if unknown)."""
        part = getattr(self, split)
        if isinstance(part, tuple):
            return len(part[1])
        return (self.sizes or {}).get(split)

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


def standardise(x, preprocessing):
    """Images scaled by `preprocessing["scale"]` (NumPy, channels last) to the model's inputs."""
    x = np.asarray(x, "float32")
    if preprocessing.get("channel_order") == "BGR":
        x = x[..., ::-1]
    return _standardise(x, np.asarray(preprocessing["mean"], "float32"), np.asarray(preprocessing["std"], "float32"))


def unstandardise(x, preprocessing):
    """The inverse of `standardise`: model inputs back to images scaled by `preprocessing["scale"]`."""
    x = np.asarray(x, "float32") * np.asarray(preprocessing["std"], "float32") + np.asarray(
        preprocessing["mean"], "float32")
    return x[..., ::-1] if preprocessing.get("channel_order") == "BGR" else x


def restandardise(x, source, target):
    """Inputs standardised as `source` describes, standardised as `target` does instead (via raw pixels)."""
    return standardise(unstandardise(x, source) * (target["scale"] / source["scale"]), target)


def check_preprocessing(preprocessing, input_shape=None, what="`preprocessing`"):
    """Refuse a preprocessing record that cannot be applied as `standardise` applies it (damaged metadata)."""
    import numbers

    def numbers_ok(values, n):
        return (isinstance(values, list) and len(values) in n and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) for v in values))

    channels = input_shape[-1] if input_shape and input_shape[-1] else None
    n = (channels,) if channels else (1, 3, 4)
    problem = None
    if not isinstance(preprocessing, dict):
        problem = "it is not a JSON object"
    elif not (isinstance(preprocessing.get("scale"), numbers.Real) and np.isfinite(preprocessing["scale"])
              and preprocessing["scale"] > 0):
        problem = f"scale={preprocessing.get('scale')!r} is not a positive number"
    elif not numbers_ok(preprocessing.get("mean"), n) or not numbers_ok(preprocessing.get("std"), n) or min(
            preprocessing["std"]) <= 0:
        problem = (f"mean={preprocessing.get('mean')!r} and std={preprocessing.get('std')!r} are not "
                   f"{channels or 'per-channel'} finite numbers with std > 0")
    elif preprocessing.get("channel_order", "RGB") not in ("RGB", "BGR"):
        problem = f"channel_order={preprocessing.get('channel_order')!r} is not 'RGB' or 'BGR'"
    else:
        resize = preprocessing.get("resize")
        size = list(input_shape[:2]) if input_shape and None not in input_shape[:2] else None
        if resize is not None and (not numbers_ok(resize, (2,)) or (size and list(resize) != size)):
            problem = f"resize={resize!r} is not the input's height and width {size}"
    if problem:
        raise ValueError(f"{what} is damaged: {problem}; it cannot be applied to images.")
    return preprocessing


def _normalization(normalization, channels, estimate):
    """(mean, std, record) of a loader: a fixed convention, or the statistics `estimate()` returns."""
    if normalization is None:
        mean, std = estimate()
        return mean, std, {"channel_order": "RGB", "convention": "training images"}
    mean = np.asarray(normalization["mean"], "float32")
    std = np.asarray(normalization["std"], "float32")
    order = normalization.get("channel_order", "RGB")
    if channels == 1 and mean.shape == (3,) and std.shape == (3,):  # grey images under an RGB convention
        mean, std, order = mean.mean(keepdims=True), std.mean(keepdims=True), "RGB"
    if mean.shape != (channels,) or std.shape != (channels,) or not (std > 0).all():
        raise ValueError(
            f"`normalization` must give {channels} mean and {channels} positive std values, one per channel of the "
            f"images; received {normalization!r}."
        )
    return mean, std, {"channel_order": order, "convention": normalization.get("convention", "given")}


def _normaliser(mean, std, channel_order):
    def normalise(image, label):
        if channel_order == "BGR":
            image = image[..., ::-1]
        return (image - mean) / std, label

    return normalise


def _check_fractions(validation_fraction, test_fraction):
    check_unit_interval("validation_fraction", validation_fraction, open_right=True)
    check_unit_interval("test_fraction", test_fraction, open_right=True)
    if validation_fraction <= 0 or test_fraction <= 0 or validation_fraction + test_fraction >= 0.9:
        raise ValueError(
            "`validation_fraction` and `test_fraction` must be positive and leave at least 10% for training; "
            f"received validation_fraction={validation_fraction!r}, test_fraction={test_fraction!r}."
        )


def load_digits(*, seed=0, validation_fraction=0.1, test_fraction=0.2):
    """scikit-learn's handwritten digits as (N, 8, 8, 1) float32, stratified split with a fixed seed."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    _check_fractions(validation_fraction, test_fraction)
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
        preprocessing={"scale": scale, "mean": mean.tolist(), "std": std.tolist(), "resize": None,
                       "channel_order": "RGB", "convention": "training images"},
    )


class DatasetNotAvailableError(ZooError):
    """A TFDS set that is not prepared locally and was not allowed to download."""


# Largest side accepted for `image_size`: beyond it one batch of float32 images no longer fits in memory.
MAX_IMAGE_SIDE = 4096


def _check_image_size(image_size):
    """None, or `(height, width)` of positive integers up to MAX_IMAGE_SIDE."""
    if image_size is None:
        return None
    message = (
        f"`image_size` must be (height, width), two integers from 1 to {MAX_IMAGE_SIDE}; "
        f"received image_size={image_size!r}."
    )
    if isinstance(image_size, (str, bytes)) or not hasattr(image_size, "__len__") or len(image_size) != 2:
        raise ValueError(message)
    try:
        size = tuple(check_positive_int("image_size", s) for s in image_size)
    except ValueError:
        raise ValueError(message) from None
    if max(size) > MAX_IMAGE_SIDE:
        raise ValueError(message)
    return size


# Training-time augmentation (`augment`): what each name applies to every training image, in this order
# (the table lives in the Keras-free lacnn_zoo.options, for the command line).
from lacnn_zoo.options import AUGMENTS  # noqa: E402
# RandAugment as Keras implements it (`keras.layers.RandAugment`): 2 operations per image at magnitude 0.5
# of Keras' range, its defaults (Cubuk et al. 2020 found N=2 good for CIFAR; the magnitude scale is Keras').
RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE = 2, 0.5


def check_augment(augment):
    """The augmentation's name: 'none', 'crop-flip' or 'randaugment' (True and False, the flag of earlier
    releases, mean 'crop-flip' and 'none')."""
    if augment is None or augment is False:
        return "none"
    if augment is True:
        return "crop-flip"
    if isinstance(augment, str) and augment in AUGMENTS:
        return augment
    raise ValueError(f"`augment` must be one of {', '.join(AUGMENTS)}; received augment={augment!r}.")


def check_mixing(mixup=0.0, cutmix=0.0, random_erasing=0.0):
    """MixUp and CutMix alphas (>= 0, 0 = off) and the random-erasing probability (in [0, 1])."""
    check_finite("mixup", mixup, minimum=0)
    check_finite("cutmix", cutmix, minimum=0)
    check_finite("random_erasing", random_erasing, minimum=0)
    if random_erasing > 1:
        raise ValueError(f"`random_erasing` is a probability in [0, 1]; received random_erasing={random_erasing!r}.")
    return float(mixup), float(cutmix), float(random_erasing)


def _crop_flip(height, width, channels, seed):
    """Random crop after padding by 1/8 of the size, and a random horizontal flip (the CIFAR recipe)."""
    import tensorflow as tf

    def augment_fn(image, label):
        pad_h, pad_w = max(1, height // 8), max(1, width // 8)
        image = tf.image.resize_with_crop_or_pad(image, height + 2 * pad_h, width + 2 * pad_w)
        image = tf.image.random_crop(image, (height, width, channels), seed=seed)
        image = tf.image.random_flip_left_right(image, seed=seed)
        return image, label

    return augment_fn


def _augmenter(augment, random_erasing, height, width, channels, seed):
    """The per-image training augmentation (on pixels in [0, 1], before standardisation), or None.

    'crop-flip': pad by 1/8 of the size, random crop, random horizontal flip. 'randaugment': crop-flip, then
    `keras.layers.RandAugment`. `random_erasing` > 0: then `keras.layers.RandomErasing` erases one random
    patch with that probability (Zhong et al. 2020; Keras' patch sizes and noise fill).
    """
    import keras

    steps = []
    if augment in ("crop-flip", "randaugment"):
        steps.append(_crop_flip(height, width, channels, seed))
    if augment == "randaugment":
        rand = keras.layers.RandAugment(value_range=(0, 1), num_ops=RANDAUGMENT_OPS, factor=RANDAUGMENT_MAGNITUDE,
                                        seed=seed, dtype="float32")
        steps.append(lambda image, label: (rand(image, training=True), label))
    if random_erasing:
        # Keras samples the probability from [0, factor] for a single float; (p, p) makes it exactly p.
        erase = keras.layers.RandomErasing(factor=(random_erasing, random_erasing), value_range=(0, 1),
                                           seed=seed, dtype="float32")
        steps.append(lambda image, label: (erase(image, training=True), label))
    if not steps:
        return None

    def augment_fn(image, label):
        for step in steps:
            image, label = step(image, label)
        return image, label

    return augment_fn


def one_hot_labels(ds, num_classes):
    """A batched `(image, label)` pipeline with one-hot float32 labels (for soft-label training)."""
    import tensorflow as tf

    return ds.map(lambda image, label: (image, tf.one_hot(label, num_classes, dtype=tf.float32)),
                  num_parallel_calls=tf.data.AUTOTUNE)


def mix_batches(ds, num_classes, *, mixup=0.0, cutmix=0.0, seed=0):
    """One-hot labels, then MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) on each training batch.

    Keras' own layers do the mixing: `keras.layers.MixUp(alpha=mixup)` blends each image with another of the
    batch, weight ~ Beta(alpha, alpha); `keras.layers.CutMix(factor=(cutmix, cutmix))` pastes a box of
    another image, area ~ Beta(alpha, alpha); the labels are mixed in the same proportion. With both
    alphas, each batch takes one of the two with probability 1/2 (timm's switch probability).
    """
    import keras
    import tensorflow as tf

    ds = one_hot_labels(ds, num_classes)
    layers = []
    if mixup:
        layers.append(keras.layers.MixUp(alpha=mixup, seed=seed, dtype="float32"))
    if cutmix:
        layers.append(keras.layers.CutMix(factor=(cutmix, cutmix), seed=seed + 1, dtype="float32"))
    if not layers:
        return ds

    def apply(layer, images, labels):
        out = layer({"images": images, "labels": labels}, training=True)
        return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)

    def mix(images, labels):
        if len(layers) == 1:
            return apply(layers[0], images, labels)
        return tf.cond(tf.random.uniform([], seed=seed) < 0.5, lambda: apply(layers[0], images, labels),
                       lambda: apply(layers[1], images, labels))

    return ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)


def load_tfds(
    name,
    *,
    seed=0,
    batch_size=64,
    data_dir=None,
    download=False,
    image_size=None,
    augment=False,
    random_erasing=0.0,
    validation_fraction=0.1,
    test_fraction=0.2,
    train_split="train",
    test_split="test",
    stats_examples=2000,
    normalization=None,
):
    """Load a TFDS image-classification set as batched tf.data pipelines.

    Args:
        name: a TFDS name with `image` and `label` features (cifar10, mnist, ...).
        data_dir: where prepared TFDS data lives (TFDS' default when None).
        download: allow TFDS to download and prepare (needs network).
        image_size: `(height, width)` to resize to, or None to keep the native size.
        augment: training augmentation, one of `AUGMENTS`: 'none', 'crop-flip' (random crop after padding by
            1/8 of the size, and horizontal flip) or 'randaugment' (crop-flip, then Keras' RandAugment).
        random_erasing: probability of erasing a random patch of each training image (Keras' RandomErasing).
        validation_fraction: the tail of `train_split` held out for validation.
        test_fraction: the share of `train_split` carved out for testing when there is no test split.
        train_split: the TFDS split to train on (a split name such as 'train').
        test_split: the split used for the final test accuracy (a TFDS split string such as 'test' or
            'validation[:50%]'). None, or the default 'test' on a set that has no 'test' split (tf_flowers),
            carves the test data from the tail of `train_split`: then the splits are
            `train[:70%]`, `train[70%:80%]` (validation) and `train[80%:]` (test) for the default fractions.
        stats_examples: training images used to estimate the per-channel mean/std.
        normalization: None (standardise with the training images' mean and std), or a fixed convention
            `{"mean", "std", "channel_order", "convention"}` on [0, 1] pixels, e.g. a keras.applications
            backbone's (`lacnn_zoo.models.backbones.input_convention`).
    """
    import re

    import tensorflow as tf
    import tensorflow_datasets as tfds

    check_positive_int("batch_size", batch_size)
    augment = check_augment(augment)
    random_erasing = check_mixing(random_erasing=random_erasing)[2]
    check_unit_interval("validation_fraction", validation_fraction, open_right=True)
    if not 0 < validation_fraction < 1:
        raise ValueError(f"`validation_fraction` must be in (0, 1); received {validation_fraction!r}.")
    if not isinstance(train_split, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", train_split):
        raise ValueError(f"`train_split` must be a TFDS split name such as 'train'; received {train_split!r}.")
    if test_split is not None and (not isinstance(test_split, str) or not test_split.strip()):
        raise ValueError(f"`test_split` must be a TFDS split string such as 'test', or None; received {test_split!r}.")
    image_size = _check_image_size(image_size)
    try:
        known = set(tfds.builder(name, data_dir=data_dir).info.splits.keys())  # empty until prepared
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"Unknown TFDS data set name={name!r} (and no folder of that name here); see tfds.list_builders(), "
            "or pass a folder of class subfolders as a path (e.g. ./photos)."
        ) from e
    if known and train_split not in known:
        raise ValueError(f"TFDS set {name!r} has no split train_split={train_split!r}; it has {sorted(known)}.")
    carve = test_split is None or (test_split == "test" and bool(known) and "test" not in known)
    if not carve and known:
        parts = [re.split(r"[\[(]", part, maxsplit=1)[0].strip() for part in test_split.split("+")]
        if any(part not in known for part in parts):
            raise ValueError(f"TFDS set {name!r} has no split test_split={test_split!r}; it has {sorted(known)}.")
    if carve:
        _check_fractions(validation_fraction, test_fraction)
        cut_val = round(100 * (1 - test_fraction - validation_fraction))
        cut_test = round(100 * (1 - test_fraction))
        splits = (f"{train_split}[:{cut_val}%]", f"{train_split}[{cut_val}%:{cut_test}%]",
                  f"{train_split}[{cut_test}%:]")
    else:
        cut = round(100 * (1 - validation_fraction))
        splits = (f"{train_split}[:{cut}%]", f"{train_split}[{cut}%:]", test_split)
    try:
        (train, val, test), info = tfds.load(
            name, split=list(splits), data_dir=data_dir, download=download, with_info=True
        )
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"Unknown TFDS data set name={name!r}; see tfds.list_builders().") from e
    except AssertionError as e:
        where = data_dir or "TFDS' default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
        raise DatasetNotAvailableError(
            f"TFDS data set {name!r} is not prepared in {where}. Either pass "
            f"{spell('data_dir=<folder where it was prepared>', '--data-dir <folder where it was prepared>')}, or "
            f"{spell('download=True', '--download')} on a machine with network access, "
            f"or prepare it once with `tfds build {name}`."
        ) from e

    features = info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"TFDS set {name!r} has no 'image'/'label' features; it is not an image-classification set.")
    # Read the features by name rather than as_supervised, which sets built with
    # tfds.dataset_builders.store_as_tfds_dataset do not declare.
    train, val, test = (ds.map(lambda ex: (ex["image"], ex["label"])) for ds in (train, val, test))
    num_classes = features["label"].num_classes
    native = tuple(features["image"].shape)
    channels = native[-1]
    if image_size is None and (native[0] is None or native[1] is None):
        raise ValueError(f"TFDS set {name!r} has images of varying size; pass image_size=(height, width).")
    height, width = image_size or native[:2]
    scale = 1.0 / 255.0

    def to_float(image, label):
        image = tf.cast(image, tf.float32) * scale
        if image_size is not None:
            image = tf.image.resize(image, (height, width))
        return image, tf.cast(label, tf.int32)

    def estimate():
        sample = np.stack([x.numpy() for x, _ in train.take(stats_examples).map(to_float)])
        return (sample.mean(axis=(0, 1, 2)).astype("float32"),
                np.maximum(sample.std(axis=(0, 1, 2)), 1e-6).astype("float32"))

    mean, std, record = _normalization(normalization, channels, estimate)
    normalise = _normaliser(mean, std, record["channel_order"])
    autotune = tf.data.AUTOTUNE
    train = train.map(to_float, num_parallel_calls=autotune).shuffle(10_000, seed=seed)
    augment_fn = _augmenter(augment, random_erasing, height, width, channels, seed)
    if augment_fn is not None:
        train = train.map(augment_fn, num_parallel_calls=autotune)

    def finish(ds):
        return ds.map(normalise, num_parallel_calls=autotune).batch(batch_size).prefetch(autotune)

    preprocessing = {
        "scale": scale,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "resize": None if image_size is None else [height, width],
        **record,
    }
    names = getattr(features["label"], "names", None)
    if names:
        preprocessing["class_names"] = list(names)
    try:
        sizes = dict(zip(("train", "validation", "test"), (info.splits[split].num_examples for split in splits)))
    except (KeyError, ValueError, TypeError):
        sizes = None
    return DataSplits(
        sizes=sizes,
        name=name,
        train=finish(train),
        validation=finish(val.map(to_float, num_parallel_calls=autotune)),
        test=finish(test.map(to_float, num_parallel_calls=autotune)),
        input_shape=(height, width, channels),
        num_classes=num_classes,
        preprocessing=preprocessing,
    )


# ---------------------------------------------------------------------------------------------------------------
# Folders of the user's own images.

# The formats keras.utils.image_dataset_from_directory reads (its ALLOWLIST_FORMATS), decoded by the same
# TensorFlow ops it uses (tf.io.decode_image with expand_animations=False: a GIF gives its first frame).
IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
# Named split subfolders: when PATH/train exists, PATH/val (or PATH/validation) and PATH/test are used too.
SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation"), "test": ("test",)}
# Decoded training images are cached in memory when they take at most this many bytes (float32).
CACHE_BYTES = 1 << 30


def is_image_file(name):
    return name.lower().endswith(IMAGE_FORMATS) and not os.path.basename(name).startswith(".")


def list_images(folder):
    """Every image file under `folder` (recursively, hidden files and folders skipped), sorted."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f))
    return found


def decode_image(contents, channels):
    """Encoded image bytes -> uint8 tensor (H, W, channels), `channels` 1 or 3.

    An alpha channel is dropped; grayscale is repeated to RGB when channels=3, RGB converted to
    luminance (tf.image.rgb_to_grayscale) when channels=1 (`predict` on a grayscale model).
    """
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=0, expand_animations=False)
    native = tf.shape(image)[-1]
    image = image[..., : tf.where(native <= 2, 1, 3)]  # gray+alpha -> gray, RGBA -> RGB
    if channels == 3:
        image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image)
    else:
        image = tf.cond(tf.shape(image)[-1] == 3, lambda: tf.image.rgb_to_grayscale(image), lambda: image)
    return tf.ensure_shape(image, [None, None, channels])


def _class_folders(root, what):
    """Sorted class subfolders of `root`, each with its sorted image files."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        loose = [e.name for e in os.scandir(root) if e.is_file() and is_image_file(e.name)]
        detail = (f"it holds {len(loose)} image files but no class subfolders" if loose
                  else "it holds no class subfolders")
        raise ValueError(
            f"`dataset` {what} {root!r} must hold one subfolder of images per class (e.g. {root}/cat/1.jpg, "
            f"{root}/dog/2.png); {detail}."
        )
    files = {name: list_images(os.path.join(root, name)) for name in classes}
    empty = [name for name, found in files.items() if not found]
    if empty:
        raise ValueError(
            f"`dataset` class folder {os.path.join(root, empty[0])!r} holds no images"
            f"{f' (nor do {len(empty) - 1} other class folders)' if len(empty) > 1 else ''}; every class needs "
            f"at least one image in a format the loader reads ({', '.join(IMAGE_FORMATS)})."
        )
    return files


def _scan_images(paths):
    """Decode every file once (in parallel, with the training decoder): shape (H, W, native channels) per file.

    Raises ValueError naming the files TensorFlow cannot decode: a corrupt file fails the load before
    any training starts, rather than being skipped (which would silently change the splits).
    """
    import tensorflow as tf

    def probe(path):
        return path, tf.shape(tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False))

    ds = tf.data.Dataset.from_tensor_slices(paths).map(probe, num_parallel_calls=tf.data.AUTOTUNE)
    shapes = {p.decode(): tuple(int(v) for v in s) for p, s in ds.ignore_errors().as_numpy_iterator()}
    bad = [p for p in paths if p not in shapes]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(
            f"`dataset` holds {len(bad)} image file(s) that cannot be decoded: {', '.join(map(repr, bad[:3]))}"
            f"{more}. Remove or replace them (formats read: {', '.join(IMAGE_FORMATS)})."
        )
    return shapes


def _stratified_split(paths, labels, fraction, seed):
    """Split off `fraction` of (paths, labels), stratified by class when every class allows it."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(paths, labels, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError:
        warnings.warn(
            f"Some classes have too few images for a stratified split of {fraction:.0%}; "
            "splitting at random (seeded) instead.",
            stacklevel=3,
        )
    try:
        return train_test_split(paths, labels, test_size=fraction, random_state=seed)
    except ValueError as e:
        raise ValueError(
            f"`dataset` has {len(paths)} images, too few to split off a fraction of {fraction!r}: {e}"
        ) from None


def load_image_folder(
    path,
    *,
    seed=0,
    batch_size=64,
    image_size=None,
    augment=False,
    random_erasing=0.0,
    validation_fraction=0.1,
    test_fraction=0.2,
    stats_examples=2000,
    data_dir=None,
    download=False,
    normalization=None,
):
    """Load a folder of images, one subfolder per class, as batched tf.data pipelines.

    The layout is that of `keras.utils.image_dataset_from_directory` (and timm's ImageFolder):
    `PATH/<class name>/<image>`, class names sorted, images found recursively in the formats
    that loader reads (`IMAGE_FORMATS`), decoded with the same TensorFlow ops.  When `PATH/train`
    exists the splits come from `PATH/train`, `PATH/val` (or `PATH/validation`) and `PATH/test`, each
    with the same class subfolders; a missing `val`/`test` folder is carved from `train`.  Otherwise
    `test_fraction` and then `validation_fraction` of the images are split off, stratified by class
    with the fixed `seed` (the same splitting as the embedded digits).

    Every image is decoded once before training: a file TensorFlow cannot decode fails the load
    with a ValueError naming it (nothing is skipped silently).  Images that are all grayscale give
    one channel; when any image is colour, grayscale images are repeated to RGB (3 channels).  An
    alpha channel is dropped.  Pixels are scaled to [0, 1], resized (bilinear, as Keras' loader) when
    `image_size` is given, and standardised per channel with the mean and std of (at most
    `stats_examples` of) the training images.

    Args:
        path: an existing folder of class subfolders.
        image_size: `(height, width)` to resize to; None keeps the native size, which must then be
            the same for every image.
        augment: training augmentation, one of `AUGMENTS`: 'none', 'crop-flip' (random crop after padding by
            1/8 of the size, and horizontal flip) or 'randaugment' (crop-flip, then Keras' RandAugment).
        random_erasing: probability of erasing a random patch of each training image (Keras' RandomErasing).
        validation_fraction, test_fraction: shares of the images held out (when there are no split folders).
        data_dir, download: accepted for a uniform `load_dataset` call; they apply to TFDS only.
        normalization: None (the training images' mean and std) or a fixed convention, as `load_tfds`.

    Returns:
        `DataSplits` whose `preprocessing` also records `class_names` (the folder names).
    """
    import tensorflow as tf

    if data_dir or download:
        raise ValueError(
            f"`data_dir` and `download` apply to TFDS names; {os.fspath(path)!r} is a folder of images. "
            f"Received data_dir={data_dir!r}, download={download!r}."
        )
    check_positive_int("batch_size", batch_size)
    check_positive_int("stats_examples", stats_examples)
    augment = check_augment(augment)
    random_erasing = check_mixing(random_erasing=random_erasing)[2]
    image_size = _check_image_size(image_size)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"`dataset` folder {path!r} does not exist; pass 'digits', a TFDS name, or a folder of class subfolders."
        )
    if not os.path.isdir(path):
        raise ValueError(f"`dataset` must be a folder of class subfolders; {path!r} is a file.")

    split_dirs = {
        split: next((os.path.join(path, n) for n in names if os.path.isdir(os.path.join(path, n))), None)
        for split, names in SPLIT_FOLDERS.items()
    }
    if split_dirs["train"]:
        by_split = {split: _class_folders(d, f"{split} folder") for split, d in split_dirs.items() if d}
        class_names = sorted(by_split["train"])
        for split, files in by_split.items():
            extra = sorted(set(files) - set(class_names))
            if extra:
                raise ValueError(
                    f"`dataset` {split} folder {split_dirs[split]!r} has class folders that train/ lacks: {extra}."
                )
    else:
        by_split = {"train": _class_folders(path, "folder")}
        class_names = sorted(by_split["train"])
    if len(class_names) < 2:
        raise ValueError(
            f"`dataset` folder {path!r} has a single class ({class_names[0]!r}); classification needs at least "
            "two class subfolders."
        )
    index = {name: i for i, name in enumerate(class_names)}
    split_files = {
        split: ([f for name in sorted(files) for f in files[name]],
                [index[name] for name in sorted(files) for _ in files[name]])
        for split, files in by_split.items()
    }
    if "test" not in split_files or "validation" not in split_files:
        _check_fractions(validation_fraction, test_fraction)
    train_paths, train_labels = split_files["train"]
    if "test" in split_files:
        test_paths, test_labels = split_files["test"]
    else:
        train_paths, test_paths, train_labels, test_labels = _stratified_split(
            train_paths, train_labels, test_fraction, seed)
    if "validation" in split_files:
        val_paths, val_labels = split_files["validation"]
    else:
        share = validation_fraction / (1 - test_fraction) if "test" not in split_files else validation_fraction
        train_paths, val_paths, train_labels, val_labels = _stratified_split(
            train_paths, train_labels, share, seed)

    shapes = _scan_images([*train_paths, *val_paths, *test_paths])
    channels = 3 if any(s[2] >= 3 for s in shapes.values()) else 1
    if image_size is None:
        sizes = {}
        for p, s in shapes.items():
            sizes.setdefault(s[:2], p)
        if len(sizes) > 1:
            (a, pa), (b, pb) = list(sizes.items())[:2]
            raise ValueError(
                f"`dataset` images differ in size ({pa!r} is {a[0]}x{a[1]}, {pb!r} is {b[0]}x{b[1]}); pass "
                f"{spell('image_size=(height, width)', '--image-size H W')} to resize them all."
            )
        height, width = next(iter(sizes))
    else:
        height, width = image_size
    scale = 1.0 / 255.0

    def load(file, label):
        image = tf.cast(decode_image(tf.io.read_file(file), channels), tf.float32) * scale
        if image_size is not None:
            image = tf.image.resize(image, (height, width))
        return tf.ensure_shape(image, (height, width, channels)), tf.cast(label, tf.int32)

    autotune = tf.data.AUTOTUNE

    def decoded(paths, labels):
        ds = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(labels, "int32")))
        ds = ds.map(load, num_parallel_calls=autotune)
        return ds.cache() if len(paths) * height * width * channels * 4 <= CACHE_BYTES else ds

    train, val, test = decoded(train_paths, train_labels), decoded(val_paths, val_labels), decoded(
        test_paths, test_labels)
    def estimate():
        total = np.zeros(channels, "float64")
        total_sq = np.zeros(channels, "float64")
        count = 0
        for x, _ in train.take(stats_examples).batch(256).as_numpy_iterator():
            total += x.sum(axis=(0, 1, 2), dtype="float64")
            total_sq += np.square(x, dtype="float64").sum(axis=(0, 1, 2))
            count += x.shape[0] * height * width
        mean = (total / count).astype("float32")
        std = np.sqrt(np.maximum(total_sq / count - np.square(total / count), 0))
        return mean, np.maximum(std, 1e-6).astype("float32")

    mean, std, record = _normalization(normalization, channels, estimate)
    normalise = _normaliser(mean, std, record["channel_order"])

    train = train.shuffle(len(train_paths), seed=seed)
    augment_fn = _augmenter(augment, random_erasing, height, width, channels, seed)
    if augment_fn is not None:
        train = train.map(augment_fn, num_parallel_calls=autotune)

    def finish(ds):
        return ds.map(normalise, num_parallel_calls=autotune).batch(batch_size).prefetch(autotune)

    return DataSplits(
        sizes={"train": len(train_paths), "validation": len(val_paths), "test": len(test_paths)},
        name=os.path.basename(os.path.normpath(path)),
        train=finish(train),
        validation=finish(val),
        test=finish(test),
        input_shape=(height, width, channels),
        num_classes=len(class_names),
        preprocessing={
            "scale": scale,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "resize": None if image_size is None else [height, width],
            **record,
            "class_names": class_names,
        },
    )


def is_folder_name(name):
    """True when `dataset` names a folder (an existing one, or a string that is clearly a path)."""
    name = os.fspath(name)
    return os.path.isdir(name) or os.sep in name or name.startswith((".", "~")) or (
        os.altsep is not None and os.altsep in name)


def load_dataset(name="digits", *, seed=0, batch_size=64, **kwargs):
    """`"digits"` (embedded, no network), a folder of class subfolders, or any TFDS image-classification name.

    Keyword arguments go to `load_image_folder` (a folder) or `load_tfds` (a TFDS name).
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name:
        raise ValueError(
            "`dataset` must be 'digits', a folder of class subfolders, or a TFDS name such as 'cifar10'; "
            f"received {name!r}."
        )
    if name == "digits":
        for arg in ("augment", "random_erasing", "normalization"):
            if kwargs.get(arg) and kwargs.get(arg) != "none":
                raise ValueError(f"`{arg}` applies to TFDS sets and image folders; the embedded digits are used "
                                 f"as scanned. Received {arg}={kwargs[arg]!r} with dataset='digits'.")
        return load_digits(seed=seed)
    if is_folder_name(name):
        return load_image_folder(os.path.expanduser(name), seed=seed, batch_size=batch_size, **kwargs)
    return load_tfds(name, seed=seed, batch_size=batch_size, **kwargs)
