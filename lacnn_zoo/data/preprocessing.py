"""The preprocessing a model expects, outside the model: `x = (raw * scale - mean) / std`, channels reversed
first when `channel_order` is "BGR"; the mean and std are the training images' own or a backbone's convention."""

import numpy as np


def _standardise(x, mean, std):
    return ((x - mean) / std).astype("float32")


def standardise(x, preprocessing):
    """Images scaled by `preprocessing["scale"]` (NumPy, channels last) to the model's inputs.

    Args:
        x: images already multiplied by `preprocessing["scale"]`, array-like, channels last.
        preprocessing: a `DataSplits.preprocessing` record (`mean`, `std` and optionally `channel_order`).

    Returns:
        A float32 NumPy array, `(x - mean) / std` with the channels first reversed when `channel_order` is "BGR".
    """
    x = np.asarray(x, "float32")
    if preprocessing.get("channel_order") == "BGR":
        x = x[..., ::-1]
    return _standardise(x, np.asarray(preprocessing["mean"], "float32"), np.asarray(preprocessing["std"], "float32"))


def unstandardise(x, preprocessing):
    """The inverse of `standardise`: model inputs back to images scaled by `preprocessing["scale"]`.

    Args:
        x: model inputs, array-like, channels last.
        preprocessing: the record they were standardised with.

    Returns:
        A float32 NumPy array, `x * std + mean` with the channels then reversed when `channel_order` is "BGR".
    """
    x = np.asarray(x, "float32") * np.asarray(preprocessing["std"], "float32") + np.asarray(
        preprocessing["mean"], "float32")
    return x[..., ::-1] if preprocessing.get("channel_order") == "BGR" else x


def restandardise(x, source, target):
    """Inputs standardised as `source` describes, standardised as `target` does instead (via raw pixels).

    Args:
        x: model inputs standardised as `source` records, array-like, channels last.
        source: the preprocessing record `x` was standardised with.
        target: the preprocessing record to standardise by instead (its `scale` included).

    Returns:
        A float32 NumPy array: the same images as `target` standardises them.
    """
    return standardise(unstandardise(x, source) * (target["scale"] / source["scale"]), target)


def check_preprocessing(preprocessing, input_shape=None, what="`preprocessing`"):
    """Refuse a preprocessing record that cannot be applied as `standardise` applies it (damaged metadata).

    Args:
        preprocessing: the record to check: a dict with a positive `scale`, finite `mean` and `std` lists
            (std > 0), and optionally `channel_order` ("RGB" or "BGR") and `resize`.
        input_shape: the model's input shape, or None; when given, `mean` and `std` must hold one value per
            channel (otherwise 1, 3 or 4 values) and a `resize` must be its height and width.
        what: how the error names the record.

    Returns:
        `preprocessing`, unchanged.

    Raises:
        ValueError: "<what> is damaged: <problem>; it cannot be applied to images."
    """
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


def resolve_normalization(normalization, channels, estimate):
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


def normaliser(mean, std, channel_order):
    def normalise(image, label):
        if channel_order == "BGR":
            image = image[..., ::-1]
        return (image - mean) / std, label

    return normalise


def channel_statistics(images, limit):
    """Per-channel mean and std of the first `limit` images of a tf.data pipeline of `(image, label)`, by Keras'
    `Normalization.adapt` (the std floored at 1e-6 so a constant channel cannot divide by zero)."""
    import keras

    layer = keras.layers.Normalization(axis=-1, dtype="float32")
    layer.adapt(images.take(limit).map(lambda image, label: image).batch(256))
    mean = keras.ops.convert_to_numpy(layer.mean).reshape(-1).astype("float32")
    variance = keras.ops.convert_to_numpy(layer.variance).reshape(-1)
    return mean, np.maximum(np.sqrt(np.maximum(variance, 0)), 1e-6).astype("float32")


def pipelines(train, validation, test, *, normalise, augment_fn, batch_size, shuffle, seed):
    """The batched pipelines of a loader: the training images shuffled (every epoch: tf.data reshuffles
    each iteration) and augmented, then every split standardised, batched and prefetched; and fourth, the
    training images un-augmented in one fixed order, shuffled once with `seed` (`DataSplits.plain_train`)."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    plain = train.shuffle(shuffle, seed=seed, reshuffle_each_iteration=False)
    train = train.shuffle(shuffle, seed=seed)
    if augment_fn is not None:
        train = train.map(augment_fn, num_parallel_calls=autotune)

    def finish(ds):
        return ds.map(normalise, num_parallel_calls=autotune).batch(batch_size).prefetch(autotune)

    return finish(train), finish(validation), finish(test), finish(plain)


def preprocessing_record(scale, mean, std, image_size, record, **extra):
    """What `DataSplits.preprocessing` records: the model's inputs are `(raw * scale - mean) / std`."""
    return {"scale": scale, "mean": mean.tolist(), "std": std.tolist(),
            "resize": None if image_size is None else list(image_size), **record, **extra}
