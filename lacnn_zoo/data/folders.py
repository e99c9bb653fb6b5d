"""Folders of the user's own images, one subfolder per class (the layout of Keras' image_dataset_from_directory
and timm's ImageFolder)."""

import os

import numpy as np

from lacnn_zoo.data.augmentation import augmenter
from lacnn_zoo.data.preprocessing import (
    channel_statistics,
    normaliser,
    pipelines,
    preprocessing_record,
    resolve_normalization,
)
from lacnn_zoo.data.splits import DataSplits, check_fractions, check_loader_options, stratified_split
from lacnn_zoo.errors import spell

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
    """Whether `name` is an image file the loaders read: an `IMAGE_FORMATS` extension, and not hidden.

    Args:
        name: a file name or path.

    Returns:
        True when `name` ends with one of `IMAGE_FORMATS` (in any case) and its base name does not start with ".".
    """
    return name.lower().endswith(IMAGE_FORMATS) and not os.path.basename(name).startswith(".")


def list_images(folder):
    """Every image file under `folder` (recursively, hidden files and folders skipped), sorted.

    Args:
        folder: the folder to search (symbolic links to folders are followed).

    Returns:
        A list of the paths of the image files (`is_image_file`): each folder's files sorted, then its
        subfolders in sorted order.
    """
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f))
    return found


def decode_image(contents, channels):
    """Encoded image bytes -> uint8 tensor (H, W, channels), `channels` 1 or 3.

    An alpha channel is dropped; grayscale is repeated to RGB when channels=3, RGB converted to
    luminance (tf.image.rgb_to_grayscale) when channels=1 (`predict` on a grayscale model).

    Args:
        contents: the encoded bytes (a scalar string tensor) of an image `tf.io.decode_image` reads; a GIF gives
            its first frame.
        channels: 1 or 3, the channels of the result.

    Returns:
        A uint8 `tf.Tensor` of shape `(height, width, channels)`.
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

    Every image is decoded once before training: a file TensorFlow cannot decode fails the load with a
    ValueError naming it.  All-grayscale images give one channel; when any image is colour, grayscale ones are
    repeated to RGB; alpha is dropped.  Pixels are scaled to [0, 1], resized (bilinear, as Keras' loader) when
    `image_size` is given, and standardised per channel (`normalization`, `stats_examples` as `load_tfds`).

    Args:
        path: an existing folder of class subfolders.
        seed: the seed of the splits, of shuffling and of augmentation.
        batch_size: images per batch.
        image_size: `(height, width)` to resize to; None keeps the native size (then the same for every image).
        augment: training augmentation, one of `AUGMENTS`: 'none', 'crop-flip' (random crop after padding by
            1/8 of the size, and horizontal flip) or 'randaugment' (crop-flip, then Keras' RandAugment).
        random_erasing: probability of erasing a random patch of each training image (Keras' RandomErasing).
        validation_fraction: share of the images held out for validation (when there are no split folders).
        test_fraction: share of the images held out for testing (when there are no split folders).
        stats_examples: training images used to estimate the per-channel mean/std, as `load_tfds`.
        data_dir: refused when set (it applies to TFDS names).
        download: refused when set (it applies to TFDS names).
        normalization: None (the training images' mean and std) or a fixed convention, as `load_tfds`.

    Returns:
        `DataSplits` whose `preprocessing` also records `class_names` (the folder names).
    """
    import tensorflow as tf

    if data_dir or download:
        raise ValueError(f"`data_dir` and `download` apply to TFDS names; {os.fspath(path)!r} is a folder of images. "
                         f"Received data_dir={data_dir!r}, download={download!r}.")
    augment, random_erasing, image_size = check_loader_options(batch_size, augment, random_erasing, image_size,
                                                               stats_examples)
    path = os.fspath(path)
    class_names, (train_files, val_files, test_files) = _split_files(path, seed, validation_fraction, test_fraction)
    height, width, channels = _geometry(_scan_images([*train_files[0], *val_files[0], *test_files[0]]), image_size)
    scale = 1.0 / 255.0

    def load(file, label):
        image = tf.cast(decode_image(tf.io.read_file(file), channels), tf.float32) * scale
        if image_size is not None:
            image = tf.image.resize(image, (height, width))
        return tf.ensure_shape(image, (height, width, channels)), tf.cast(label, tf.int32)

    def decoded(paths, labels):
        ds = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(labels, "int32")))
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.cache() if len(paths) * height * width * channels * 4 <= CACHE_BYTES else ds

    train, val, test = (decoded(*files) for files in (train_files, val_files, test_files))
    mean, std, record = resolve_normalization(normalization, channels,
                                              lambda: channel_statistics(train, stats_examples))
    train, val, test, plain_train = pipelines(
        train, val, test, normalise=normaliser(mean, std, record["channel_order"]),
        augment_fn=augmenter(augment, random_erasing, height, width, channels, seed), batch_size=batch_size,
        shuffle=len(train_files[0]), seed=seed)
    return DataSplits(
        plain_train=plain_train,
        sizes={"train": len(train_files[0]), "validation": len(val_files[0]), "test": len(test_files[0])},
        name=os.path.basename(os.path.normpath(path)), train=train, validation=val, test=test,
        input_shape=(height, width, channels), num_classes=len(class_names),
        preprocessing=preprocessing_record(scale, mean, std, image_size, record, class_names=class_names),
        files={split: [os.path.relpath(f, path) for f in files[0]]
               for split, files in (("train", train_files), ("validation", val_files), ("test", test_files))},
    )


def _split_files(path, seed, validation_fraction, test_fraction):
    """Class names and the `(paths, labels)` of train, validation and test: from split subfolders when
    `path/train` exists (a missing one carved from train), else stratified shares of every image."""
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
        check_fractions(validation_fraction, test_fraction)
    train_paths, train_labels = split_files["train"]
    if "test" in split_files:
        test_paths, test_labels = split_files["test"]
    else:
        train_paths, test_paths, train_labels, test_labels = stratified_split(
            train_paths, train_labels, test_fraction, seed)
    if "validation" in split_files:
        val_paths, val_labels = split_files["validation"]
    else:
        share = validation_fraction / (1 - test_fraction) if "test" not in split_files else validation_fraction
        train_paths, val_paths, train_labels, val_labels = stratified_split(
            train_paths, train_labels, share, seed)
    return class_names, ((train_paths, train_labels), (val_paths, val_labels), (test_paths, test_labels))


def _geometry(shapes, image_size):
    """(height, width, channels) of the model's inputs: 3 channels when any image is colour; the native size
    when every image has the same one, else `image_size` must be given."""
    channels = 3 if any(s[2] >= 3 for s in shapes.values()) else 1
    if image_size is not None:
        return (*image_size, channels)
    sizes = {}
    for p, s in shapes.items():
        sizes.setdefault(s[:2], p)
    if len(sizes) > 1:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise ValueError(
            f"`dataset` images differ in size ({pa!r} is {a[0]}x{a[1]}, {pb!r} is {b[0]}x{b[1]}); pass "
            f"{spell('image_size=(height, width)', '--image-size H W')} to resize them all."
        )
    return (*next(iter(sizes)), channels)


def is_folder_name(name):
    """True when `dataset` names a folder (an existing one, or a string that is clearly a path).

    Args:
        name: the `dataset` argument, a str or `os.PathLike`.

    Returns:
        True when `name` is an existing folder, holds a path separator, or starts with "." or "~"; else False.
    """
    name = os.fspath(name)
    return os.path.isdir(name) or os.sep in name or name.startswith((".", "~")) or (
        os.altsep is not None and os.altsep in name)
