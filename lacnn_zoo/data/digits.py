"""The embedded handwritten digits: scikit-learn's bundled copy (1797 scanned 8x8 digits, values 0..16), no
network needed."""

import os

import numpy as np

from lacnn_zoo.data.preprocessing import standardise
from lacnn_zoo.data.splits import DataSplits, check_fractions
from lacnn_zoo.errors import spell
from lacnn_zoo.io import atomic_path
from lacnn_zoo.options import check_bounded


def load_digits(*, seed=0, validation_fraction=0.1, test_fraction=0.2):
    """scikit-learn's handwritten digits as (N, 8, 8, 1) float32, stratified split with a fixed seed.

    Args:
        seed: the seed of the stratified splits.
        validation_fraction: the share of all images held out for validation.
        test_fraction: the share of all images held out for testing.

    Returns:
        `DataSplits` named 'digits' of NumPy `(x, y)` tuples (float32 images, int32 labels), 10 classes,
        `input_shape` (8, 8, 1): pixels scaled by 1/16, then standardised by the training images' mean and std.

    Raises:
        ValueError: a fraction is not in (0, 1), or the two do not leave at least 10% of the images for training.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    check_fractions(validation_fraction, test_fraction)
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
    stats = {"mean": mean, "std": std}
    return DataSplits(
        name="digits",
        train=(standardise(x_train, stats), y_train),
        validation=(standardise(x_val, stats), y_val),
        test=(standardise(x_test, stats), y_test),
        input_shape=(8, 8, 1),
        num_classes=10,
        preprocessing={"scale": scale, "mean": mean.tolist(), "std": std.tolist(), "resize": None,
                       "channel_order": "RGB", "convention": "training images"},
    )


def write_digits_folder(root, *, size=32, per_class=None, channels=1, seed=0):
    """Write the embedded digits as a folder of PNG images, one subfolder per class (`root/0` ... `root/9`).

    A folder of the layout `load_image_folder` (and Keras' `image_dataset_from_directory`) reads, made from data
    every install has: the way to try the image-folder path (`--dataset ./photos`) before one's own images.
    Each scan (values 0..16) is scaled to 0..255, rounded, and resized to `size` x `size` (nearest neighbour, so
    every pixel keeps a scanned value); the file `root/<class>/<index>.png` is the scan of that index in
    scikit-learn's `load_digits()`.

    The folder is written beside `root` under a temporary name and renamed onto it when complete: an interrupted
    call leaves no half-written `root`.

    Args:
        root: the folder to create; it must not exist, or be an empty folder.
        size: the side of the square images, in pixels (8 keeps the scans' own size).
        per_class: the images written per class, drawn without replacement with `seed`; None writes all 1797
            (174 to 183 a class).
        channels: 1 (grayscale PNG) or 3 (the gray value in R, G and B, for models that need colour input).
        seed: the seed of the draw when `per_class` is given.

    Returns:
        The number of images written.

    Raises:
        ValueError: `root` exists and is not an empty folder, or an argument is outside what is accepted.
    """
    from PIL import Image
    from sklearn.datasets import load_digits as sk_load_digits

    shown_root = spell("`root`", "DIR")
    root = os.fspath(root)
    if os.path.lexists(root) and not (os.path.isdir(root) and not os.path.islink(root) and not os.listdir(root)):
        raise ValueError(f"{shown_root} {root!r} already exists and is not an empty folder; the digits are written "
                         f"to a new folder only (nothing is replaced).")
    size = check_bounded("image_side", size, "size", "--size")
    if channels not in (1, 3):
        raise ValueError(f"{spell('`channels`', '--channels')} must be 1 or 3; received {channels!r}.")
    seed = check_bounded("seed", seed, "seed", "--seed")
    digits = sk_load_digits()
    smallest = int(np.bincount(digits.target).min())
    counted = isinstance(per_class, int) and not isinstance(per_class, bool)
    if per_class is not None and not (counted and 1 <= per_class <= smallest):
        raise ValueError(f"{spell('`per_class`', '--per-class')} must be an integer from 1 to {smallest} (the "
                         f"fewest scans of a class), {spell('or None', 'or left out')} for all; "
                         f"received {per_class!r}.")
    rng = np.random.default_rng(seed)
    written = 0
    with atomic_path(root) as tmp:
        for label in range(10):
            indices = np.flatnonzero(digits.target == label)
            if per_class is not None:
                indices = np.sort(rng.choice(indices, per_class, replace=False))
            os.makedirs(os.path.join(tmp, str(label)))
            for i in indices:
                pixels = np.round(digits.images[i] * (255.0 / 16.0)).astype("uint8")
                image = Image.fromarray(pixels).resize((size, size), Image.NEAREST)
                image.convert("RGB" if channels == 3 else "L").save(os.path.join(tmp, str(label), f"{i:04d}.png"))
                written += 1
    return written
