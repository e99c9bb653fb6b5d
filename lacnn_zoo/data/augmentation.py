"""Training-time augmentation (per image, on [0, 1] pixels) and batch mixing (MixUp, CutMix), by Keras' layers."""

from lacnn_zoo.options import AUGMENTS  # what each name applies, in this order (a Keras-free table)
from lacnn_zoo.validation import check_finite

# RandAugment as Keras implements it (`keras.layers.RandAugment`): 2 operations per image at magnitude 0.5
# of Keras' range, its defaults (Cubuk et al. 2020 found N=2 good for CIFAR; the magnitude scale is Keras').
RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE = 2, 0.5


def check_augment(augment):
    """The augmentation's name: 'none', 'crop-flip' or 'randaugment' (True and False, the flag of earlier
    releases, mean 'crop-flip' and 'none').

    Args:
        augment: a name of `AUGMENTS`, or True, False or None (None means 'none' too).

    Returns:
        The augmentation's name, a str of `AUGMENTS`.

    Raises:
        ValueError: `augment` is none of these.
    """
    if augment is None or augment is False:
        return "none"
    if augment is True:
        return "crop-flip"
    if isinstance(augment, str) and augment in AUGMENTS:
        return augment
    raise ValueError(f"`augment` must be one of {', '.join(AUGMENTS)}; received augment={augment!r}.")


def check_mixing(mixup=0.0, cutmix=0.0, random_erasing=0.0):
    """MixUp and CutMix alphas (>= 0, 0 = off) and the random-erasing probability (in [0, 1]).

    Args:
        mixup: MixUp's alpha, a finite number >= 0 (0: off).
        cutmix: CutMix's alpha, a finite number >= 0 (0: off).
        random_erasing: the probability of erasing a patch of each training image, in [0, 1].

    Returns:
        `(mixup, cutmix, random_erasing)` as floats.

    Raises:
        ValueError: a value is not a finite number, is negative, or `random_erasing` is above 1.
    """
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


def augmenter(augment, random_erasing, height, width, channels, seed):
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
    """A batched `(image, label)` pipeline with one-hot float32 labels (for soft-label training).

    Args:
        ds: a `tf.data.Dataset` of `(image, label)` with integer labels.
        num_classes: the length of the one-hot vectors.

    Returns:
        The `tf.data.Dataset` of `(image, one-hot float32 label)`.
    """
    import tensorflow as tf

    return ds.map(lambda image, label: (image, tf.one_hot(label, num_classes, dtype=tf.float32)),
                  num_parallel_calls=tf.data.AUTOTUNE)


def mix_batches(ds, num_classes, *, mixup=0.0, cutmix=0.0, seed=0):
    """One-hot labels, then MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) on each training batch.

    Keras' own layers do the mixing: `keras.layers.MixUp(alpha=mixup)` blends each image with another of the
    batch, weight ~ Beta(alpha, alpha); `keras.layers.CutMix(factor=(cutmix, cutmix))` pastes a box of
    another image, area ~ Beta(alpha, alpha); the labels are mixed in the same proportion. With both
    alphas, each batch takes one of the two with probability 1/2 (timm's switch probability).

    Args:
        ds: a batched `tf.data.Dataset` of `(images, labels)` with integer labels.
        num_classes: the number of classes (the length of the one-hot labels).
        mixup: MixUp's alpha; 0 leaves MixUp off.
        cutmix: CutMix's alpha; 0 leaves CutMix off.
        seed: the seed of MixUp (CutMix takes `seed + 1`) and of the choice between the two.

    Returns:
        The `tf.data.Dataset` of mixed `(images, soft labels)`, both float32; with both alphas 0, the batches
        with one-hot labels only.
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
