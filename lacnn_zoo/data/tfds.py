"""TFDS image-classification sets as batched tf.data pipelines (`download=False` unless asked: without prepared
data the error comes at once and says what to do)."""



from lacnn_zoo.data.augmentation import augmenter
from lacnn_zoo.data.preprocessing import (
    channel_statistics,
    normaliser,
    pipelines,
    preprocessing_record,
    resolve_normalization,
)
from lacnn_zoo.data.splits import DatasetNotAvailableError, DataSplits, check_fractions, check_loader_options
from lacnn_zoo.errors import spell
from lacnn_zoo.validation import check_unit_interval


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
        seed: the seed of shuffling and augmentation.
        batch_size: images per batch.
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

    Returns:
        `DataSplits` of batched `tf.data.Dataset`s of `(image, int32 label)`, `plain_train` and, where TFDS
        knows them, `sizes` set; its `preprocessing` also records `class_names` when the set names its labels.

    Raises:
        DatasetNotAvailableError: the set is not prepared locally and `download` is False.
        ValueError: an unknown name, a set without `image` and `label` features, or a bad option.
    """
    import tensorflow as tf

    augment, random_erasing, image_size = check_loader_options(batch_size, augment, random_erasing, image_size,
                                                               stats_examples)
    splits = _split_strings(name, data_dir, train_split, test_split, validation_fraction, test_fraction)
    (train, val, test), info = _load(name, splits, data_dir, download)
    features = info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"TFDS set {name!r} has no 'image'/'label' features; it is not an image-classification set.")
    native = tuple(features["image"].shape)
    channels = native[-1]
    if image_size is None and (native[0] is None or native[1] is None):
        raise ValueError(f"TFDS set {name!r} has images of varying size; pass image_size=(height, width).")
    height, width = image_size or native[:2]
    scale = 1.0 / 255.0

    def to_float(example):  # the features by name: sets stored with store_as_tfds_dataset lack as_supervised
        image = tf.cast(example["image"], tf.float32) * scale
        if image_size is not None:
            image = tf.image.resize(image, (height, width))
        return image, tf.cast(example["label"], tf.int32)

    train, val, test = (ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE) for ds in (train, val, test))
    mean, std, record = resolve_normalization(normalization, channels,
                                              lambda: channel_statistics(train, stats_examples))
    train, val, test, plain_train = pipelines(
        train, val, test, normalise=normaliser(mean, std, record["channel_order"]),
        augment_fn=augmenter(augment, random_erasing, height, width, channels, seed), batch_size=batch_size,
        shuffle=10_000, seed=seed)
    names = getattr(features["label"], "names", None)
    try:
        sizes = dict(zip(("train", "validation", "test"), (info.splits[split].num_examples for split in splits)))
    except (KeyError, ValueError, TypeError):
        sizes = None
    return DataSplits(
        plain_train=plain_train,
        name=name, train=train, validation=val, test=test, input_shape=(height, width, channels),
        num_classes=features["label"].num_classes, sizes=sizes,
        preprocessing=preprocessing_record(scale, mean, std, image_size, record,
                                           **({"class_names": list(names)} if names else {})),
    )


def _split_strings(name, data_dir, train_split, test_split, validation_fraction, test_fraction):
    """The TFDS split strings of train, validation and test (the test carved from train when the set has none)."""
    import re

    import tensorflow_datasets as tfds

    check_unit_interval("validation_fraction", validation_fraction, open_right=True)
    if not 0 < validation_fraction < 1:
        raise ValueError(f"`validation_fraction` must be in (0, 1); received {validation_fraction!r}.")
    if not isinstance(train_split, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", train_split):
        raise ValueError(f"`train_split` must be a TFDS split name such as 'train'; received {train_split!r}.")
    if test_split is not None and (not isinstance(test_split, str) or not test_split.strip()):
        raise ValueError(f"`test_split` must be a TFDS split string such as 'test', or None; received {test_split!r}.")
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
        check_fractions(validation_fraction, test_fraction)
        cut_val = round(100 * (1 - test_fraction - validation_fraction))
        cut_test = round(100 * (1 - test_fraction))
        return (f"{train_split}[:{cut_val}%]", f"{train_split}[{cut_val}%:{cut_test}%]",
                f"{train_split}[{cut_test}%:]")
    cut = round(100 * (1 - validation_fraction))
    return (f"{train_split}[:{cut}%]", f"{train_split}[{cut}%:]", test_split)


def _load(name, splits, data_dir, download):
    """`tfds.load` of the three splits, with one line for a set that is unknown or not prepared."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(name, split=list(splits), data_dir=data_dir, download=download, with_info=True)
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
