"""What a loader returns (`DataSplits`) and the checks every loader shares: fractions, image sizes, a
stratified split."""

import dataclasses
import warnings

import numpy as np

from lacnn_zoo.data.augmentation import check_augment, check_mixing
from lacnn_zoo.errors import ZooError
from lacnn_zoo.validation import check_positive_int, check_unit_interval


@dataclasses.dataclass
class DataSplits:
    """Train / validation / test splits and what a model needs to know about them.

    `train`, `validation` and `test` are either `(x, y)` NumPy tuples (embedded
    sets; these work on every Keras backend) or batched `tf.data.Dataset`s of
    `(image, label)` (TFDS sets, TensorFlow backend).

    Args:
        name: the data set's name.
        train: the training split.
        validation: the validation split.
        test: the test split.
        input_shape: `(height, width, channels)` of the model's inputs.
        num_classes: the number of classes.
        preprocessing: what a deployed model expects (`scale`, `mean`, `std`, `resize`, `channel_order`,
            `convention`, and `class_names` where known; see `lacnn_zoo.data.preprocessing`).
        sizes: images per split, `{"train": n, "validation": n, "test": n}`, where known; None otherwise.
        plain_train: for pipelines, the training images un-augmented in one fixed (seeded) order; None for
            arrays (they are both already).
        files: for a folder of images, each split's files in the split's order, as paths relative to the folder
            (`{"train": [...], "validation": [...], "test": [...]}`); None for other data sets.
    """

    name: str
    train: object
    validation: object
    test: object
    input_shape: tuple
    num_classes: int
    preprocessing: dict
    sizes: dict = None  # images per split, {"train": n, "validation": n, "test": n}, where known
    # Pipelines: the training images un-augmented, in one fixed (seeded) order; arrays are both already.
    plain_train: object = None
    files: dict = None  # a folder's files per split, relative to the folder, in the split's order

    @property
    def is_numpy(self):
        return isinstance(self.train, tuple)

    def size(self, split):
        """Images in `split`: counted for arrays, recorded by the loader for pipelines (None if unknown)."""
        part = getattr(self, split)
        if isinstance(part, tuple):
            return len(part[1])
        return (self.sizes or {}).get(split)

    def arrays(self, split="test", limit=None):
        """`(x, y)` of `split` as NumPy arrays (float32 images, int64 labels), its first `limit` examples."""
        return _arrays(getattr(self, split), split, limit)

    def sample(self, n=32, split="validation"):
        """A fixed batch `(x, y)` of at most n examples as NumPy arrays."""
        return self.arrays(split, n)

    def training_sample(self, n):
        """`(x, y)`: at most n training images as NumPy arrays, un-augmented and the same at every call (the
        first n of the arrays, which the split left in a seeded random order; or of `plain_train`)."""
        return _arrays(self.train if self.is_numpy or self.plain_train is None else self.plain_train, "train", n)


def _arrays(part, split, limit):
    if isinstance(part, tuple):
        x, y = part
        return np.asarray(x[:limit], "float32"), np.asarray(y[:limit], "int64")
    xs, ys, count = [], [], 0
    for x, y in part:
        xs.append(np.asarray(x, "float32"))
        ys.append(np.asarray(y, "int64"))
        count += len(ys[-1])
        if limit is not None and count >= limit:
            break
    if not xs:
        raise ZooError(f"The data set's {split} split is empty.")
    return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]


def check_fractions(validation_fraction, test_fraction):
    check_unit_interval("validation_fraction", validation_fraction, open_right=True)
    check_unit_interval("test_fraction", test_fraction, open_right=True)
    if validation_fraction <= 0 or test_fraction <= 0 or validation_fraction + test_fraction >= 0.9:
        raise ValueError(
            "`validation_fraction` and `test_fraction` must be positive and leave at least 10% for training; "
            f"received validation_fraction={validation_fraction!r}, test_fraction={test_fraction!r}."
        )


class DatasetNotAvailableError(ZooError):
    """A TFDS set that is not prepared locally and was not allowed to download."""


# Largest side accepted for `image_size`: beyond it one batch of float32 images no longer fits in memory.
MAX_IMAGE_SIDE = 4096


def check_image_size(image_size):
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


def stratified_split(paths, labels, fraction, seed):
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


def check_loader_options(batch_size, augment, random_erasing, image_size, stats_examples):
    """The options every pipeline loader takes, checked: `(augment, random_erasing, image_size)` resolved."""
    check_positive_int("batch_size", batch_size)
    check_positive_int("stats_examples", stats_examples)
    return check_augment(augment), check_mixing(random_erasing=random_erasing)[2], check_image_size(image_size)
