"""Data sets: the embedded handwritten digits (default), named TFDS image-classification sets, and folders of the
user's own images (one subfolder per class).

Preprocessing (scaling, standardisation, resizing, augmentation) happens here, OUTSIDE the model, so exported
models stay free of it; `DataSplits.preprocessing` records what a deployed model expects (see `preprocessing`).
TFDS sets load with `download=False` unless asked: without prepared data the error comes at once and says what
to do.
"""

import os

from lacnn_zoo.data.augmentation import AUGMENTS, check_augment, check_mixing, mix_batches, one_hot_labels
from lacnn_zoo.data.digits import load_digits, write_digits_folder
from lacnn_zoo.data.folders import (
    IMAGE_FORMATS,
    decode_image,
    is_folder_name,
    is_image_file,
    list_images,
    load_image_folder,
)
from lacnn_zoo.data.preprocessing import check_preprocessing, restandardise, standardise, unstandardise
from lacnn_zoo.data.splits import DatasetNotAvailableError, DataSplits
from lacnn_zoo.data.tfds import load_tfds
from lacnn_zoo.errors import spell
from lacnn_zoo.options import check_bounded

__all__ = [
    "AUGMENTS", "DataSplits", "DatasetNotAvailableError", "IMAGE_FORMATS", "check_augment", "check_mixing",
    "check_preprocessing", "decode_image", "is_folder_name", "is_image_file", "list_images", "load_dataset",
    "load_digits", "load_image_folder", "load_tfds", "mix_batches", "one_hot_labels", "refuse_on_digits",
    "restandardise", "standardise", "unstandardise", "write_digits_folder",
]


def refuse_on_digits(**options):
    """Refuse, in one line, the options that only TFDS sets and image folders take (`augment="none"` is no option).

    Args:
        **options: the options given with the digits, by name (`augment`, `random_erasing`, `normalization`); a
            false value or "none" counts as not given.

    Raises:
        ValueError: naming the first option given, which applies to TFDS sets and image folders only.
    """
    for arg, value in options.items():
        if value and value != "none":
            name = spell(f"`{arg}`", "--" + arg.replace("_", "-"))
            raise ValueError(
                f"{name} applies to TFDS data sets and image folders; the embedded digits are used as scanned (8x8, "
                f"no download, a fixed 70/10/20 split). Received {name} {value!r} with dataset 'digits'."
            )


def load_dataset(name="digits", *, seed=0, batch_size=64, **kwargs):
    """`"digits"` (embedded, no network), a folder of class subfolders, or any TFDS image-classification name.

    Keyword arguments go to `load_image_folder` (a folder) or `load_tfds` (a TFDS name).

    Args:
        name: "digits", a folder of class subfolders (a str or `os.PathLike`; `~` is expanded), or a TFDS name
            such as "cifar10".
        seed: the seed of the splits (and, for pipelines, of shuffling and augmentation).
        batch_size: images per batch of the pipelines (the digits are unbatched NumPy arrays).
        **kwargs: `load_image_folder`'s or `load_tfds`'s keyword arguments. With "digits", `augment`,
            `random_erasing` and `normalization` are refused when set, and the others are not used.

    Returns:
        A `DataSplits`: NumPy arrays for the digits, batched `tf.data` pipelines otherwise.

    Raises:
        ValueError: `name` is empty or not a str or path, `seed` is out of range, or an option does not apply to
            the digits.
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name:
        raise ValueError(
            "`dataset` must be 'digits', a folder of class subfolders, or a TFDS name such as 'cifar10'; "
            f"received {name!r}."
        )
    seed = check_bounded("seed", seed, flag="--seed")  # the split's seed, refused in the zoo's words
    if name == "digits":
        refuse_on_digits(**{arg: kwargs.get(arg) for arg in ("augment", "random_erasing", "normalization")})
        return load_digits(seed=seed)
    if is_folder_name(name):
        return load_image_folder(os.path.expanduser(name), seed=seed, batch_size=batch_size, **kwargs)
    return load_tfds(name, seed=seed, batch_size=batch_size, **kwargs)
