"""Using a trained model: its accuracy on a data set (timm's validate.py) and its classes for image files
(timm's inference.py).

Both take a `.keras` file or a run folder (its `best.keras`), load it with `lacnn_zoo.load_model`, and
read what the run recorded beside it: `run.json` (data set, seed, image size) and `metrics.json`
(`preprocessing`: `x = (resize(raw) * scale - mean) / std`, and the class names when the data set had
them).
"""

import dataclasses
import os

import numpy as np

from lacnn_zoo.data import (
    IMAGE_FORMATS,
    decode_image,
    is_image_file,
    list_images,
    load_dataset,
    refuse_on_digits,
    restandardise,
    standardise,
)
from lacnn_zoo.errors import spell
from lacnn_zoo.io import check_output_file, write_csv, write_json
from lacnn_zoo.models.saving import load_model
from lacnn_zoo.training.run_folder import RunFolder
from lacnn_zoo.validation import check_positive_int

__all__ = ["Predictions", "check_output_option", "digit_scans", "evaluate", "image_files", "predict", "predictions",
    "preprocess", "resolve", "top1"]


def top1(run, x, y, batch_size=128):
    """Fraction of `y` that `run(x_batch)` ranks first.

    Args:
        run: a callable from a batch of inputs to scores of shape (batch, classes), e.g. a model's
            `predict_on_batch`.
        x: the inputs, an array (sliced in batches).
        y: the integer labels, one per input.
        batch_size: inputs per call of `run`.

    Returns:
        The top-1 accuracy, a float in [0, 1].
    """
    correct = 0
    for start in range(0, len(y), batch_size):
        outputs = np.asarray(run(x[start:start + batch_size]))
        correct += int(np.sum(outputs.argmax(axis=-1) == y[start:start + batch_size]))
    return correct / len(y)


def resolve(model_or_run):
    """`(model_path, run, metrics)`: a `.keras` file or run folder, with the run.json/metrics.json found beside it.

    Args:
        model_or_run: a `.keras` file (or any existing file) or a run folder (its `best.keras`).

    Returns:
        A tuple `(model_path, run, metrics)`: the path of the model file, and the run.json and metrics.json of
            the folder holding it as dicts (empty where there is none).

    Raises:
        FileNotFoundError: the path does not exist, or is a folder without best.keras.
    """
    path = os.fspath(model_or_run)
    if os.path.isdir(path):
        model_path = RunFolder(path).best
        if not os.path.isfile(model_path):
            raise FileNotFoundError(
                f"`model` {path!r} is a folder without best.keras; pass a .keras file or a finished run folder."
            )
    elif os.path.exists(path):
        model_path = path
    else:
        raise FileNotFoundError(f"`model` {path!r} does not exist; pass a .keras file or a run folder.")
    run = RunFolder.beside(model_path)
    return model_path, run.raw_config(missing={}), run.metrics(missing={})


def _load(model_path):
    return load_model(model_path, compile=False)


def _outputs_probabilities(model):
    """True for a classifier ending in a softmax (`classifier_activation="softmax"`), False for logits."""
    last = model.layers[-1]
    return last.name == "probabilities" or getattr(getattr(last, "activation", None), "__name__", "") == "softmax"


def _log_probabilities(model, outputs):
    import keras

    outputs = np.asarray(outputs, dtype="float64")
    if _outputs_probabilities(model):
        return np.log(np.clip(outputs, 1e-12, 1.0))
    return keras.ops.convert_to_numpy(keras.ops.log_softmax(outputs, axis=-1))


def _batches(data, split, batch_size):
    part = getattr(data, split)
    if isinstance(part, tuple):
        for start in range(0, len(part[1]), batch_size):
            yield part[0][start:start + batch_size], part[1][start:start + batch_size]
    else:
        for x, y in part:
            yield np.asarray(x), np.asarray(y)


@dataclasses.dataclass
class Predictions:
    """A model's log-probabilities on a split, with what they were computed from.

    Args:
        model_path: the `.keras` file the model was loaded from.
        model: the loaded Keras model.
        dataset: the data set the split comes from.
        seed: the seed of the data set's split.
        split: 'train', 'validation' or 'test'.
        log_p: the log-probabilities, an array of shape (N, classes).
        labels: the integer labels, an array of shape (N,).
        preprocessing: what the model's inputs are: the run's recorded preprocessing, else the data set's.
        inputs: the model's inputs (standardised images) when asked for, else None.
        data: the `DataSplits` the split came from.
        predicted: each image's predicted class (the highest log-probability), an array of shape (N,).
        losses: each image's cross-entropy, -log p of its true class, shape (N,).
        confidence: each image's top probability, shape (N,).
        brier: each image's Brier term, sum_k (p_k - [k = true])^2, shape (N,).
        kept: the inputs kept without keeping them all, `{index in the split: input}` (the highest-loss and the
            first images asked for), else None.
        images_in_split: the images the split holds (more than `len(labels)` when `limit` cut it short).
    """

    model_path: str
    model: object
    dataset: str
    seed: int
    split: str
    log_p: np.ndarray  # (N, classes), None when not kept (`keep_log_p=False`)
    labels: np.ndarray  # (N,)
    preprocessing: dict  # what the model's inputs are: the run's record, else the data set's
    inputs: np.ndarray = None  # the model's inputs, when asked for
    data: object = None  # the DataSplits the split came from
    kept: dict = None  # {index: input} of the highest-loss and first images, when only those were kept
    predicted: np.ndarray = None  # (N,) the per-image scores: what the report keeps of a large split
    losses: np.ndarray = None
    confidence: np.ndarray = None
    brier: np.ndarray = None
    images_in_split: int = None
    reread: object = dataclasses.field(default=None, repr=False, compare=False)

    def images(self, indices):
        """The model's inputs of the images at `indices` of the split, an array: from `inputs`, else from the
        ones `kept`; ValueError for an image whose input was not kept."""
        indices = [int(i) for i in indices]
        if self.inputs is not None:
            return self.inputs[indices]
        missing = [i for i in indices if i not in (self.kept or {})]
        if missing:
            raise ValueError(f"the inputs of images {missing[:5]} were not kept: score with keep_inputs=True, or "
                             "with keep_worst/keep_first covering them.")
        shape = next(iter(self.kept.values())).shape if self.kept else (0,)
        return np.stack([self.kept[i] for i in indices]) if indices else np.zeros((0, *shape), "float32")

    def batches(self):
        """The scored images again, `(inputs, labels)` batch by batch, as the model saw them (the same
        standardisation, the same `limit`): a second pass over the split that holds one batch at a time."""
        if self.reread is None:
            yield from ((self.inputs[s:s + 256], self.labels[s:s + 256]) for s in range(0, len(self.labels), 256))
            return
        yield from self.reread()


def predictions(model_or_run, dataset=None, *, seed=None, batch_size=64, image_size=None, data_dir=None,
                download=False, split="test", keep_inputs=False, limit=None, keep_worst=0, keep_first=0,
                keep_log_p=True):
    """`Predictions` of a `.keras` file or run folder on a split (the run's data set and seed by default).

    Inputs are standardised with the model's recorded statistics (metrics.json beside it) when there are any,
    else with the data set's own training statistics.

    Args:
        model_or_run: a `.keras` file or a run folder (its `best.keras`).
        dataset: 'digits', a folder of class subfolders, or a TFDS name; by default the run's own (run.json).
        seed: the split's seed (default: the run's, else 0).
        batch_size: images per batch.
        image_size: `(height, width)` to resize to (default: the run's, when `dataset` is the run's own; refused
            with 'digits').
        data_dir: where TFDS keeps its data sets (refused with 'digits').
        download: whether TFDS may download the data set (refused with 'digits').
        split: 'test', 'validation' or 'train'.
        keep_inputs: also keep the model's inputs in `Predictions.inputs` (every image: memory grows with the
            split).
        limit: score only the first `limit` images of the split (default: all).
        keep_worst: keep the inputs of this many highest-loss images (-log p of the true class, ties to the
            earlier image) in `Predictions.kept`, selected as the batches stream by: memory stays fixed.
        keep_first: keep the inputs of this many first images in `Predictions.kept`.
        keep_log_p: keep every image's log-probabilities (`Predictions.log_p`, N x classes); without them the
            per-image scores (`predicted`, `losses`, `confidence`, `brier`: 4 numbers an image) are all that is
            kept of the split.

    Returns:
        A `Predictions`.

    Raises:
        ValueError: an unknown `split`, no data set to use, or a data set that does not fit the model (input
            shape, number of classes or class names).
    """
    if split not in ("train", "validation", "test"):
        raise ValueError(f"`split` must be 'train', 'validation' or 'test'; received split={split!r}.")
    check_positive_int("batch_size", batch_size)
    if limit is not None:
        check_positive_int("limit", limit)
    for name, value in (("keep_worst", keep_worst), ("keep_first", keep_first)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0; received {name}={value!r}.")
    model_path, run, metrics = resolve(model_or_run)
    dataset = dataset if dataset is not None else run.get("dataset")
    if not dataset:
        raise ValueError(
            f"`dataset` is needed: {model_path!r} has no run.json beside it naming the data set it was trained on."
        )
    if dataset == "digits":  # embedded and fixed: these options would be dropped
        refuse_on_digits(image_size=image_size, data_dir=data_dir, download=download)
    seed = seed if seed is not None else run.get("seed", 0)
    if image_size is None and run.get("dataset") == dataset:
        image_size = run.get("image_size")
    model = _load(model_path)
    options = {} if dataset == "digits" else dict(
        data_dir=data_dir, download=download, image_size=tuple(image_size) if image_size else None)
    data = load_dataset(dataset, seed=seed, batch_size=batch_size, **options)
    recorded = _check_fits(model, data, dataset, metrics.get("preprocessing") or {})
    same_scale = recorded.get("mean") is not None and recorded.get("scale") == data.preprocessing["scale"]

    def model_inputs():
        seen = 0
        for x, y in _batches(data, split, batch_size):
            if limit is not None:
                if seen >= limit:
                    return
                x, y = x[:limit - seen], y[:limit - seen]
            if same_scale:  # back to [0, 1] with the data set's statistics, then the model's own
                x = restandardise(x, data.preprocessing, recorded)
            seen += len(y)
            yield np.asarray(x, "float32"), np.asarray(y, "int64")

    log_p, labels, inputs, scores = [], [], [], []
    worst, kept, start = _Worst(keep_worst), {}, 0
    for x, y in model_inputs():
        batch = _log_probabilities(model, model.predict_on_batch(x))
        if keep_log_p:
            log_p.append(batch)
        scores.append(image_scores(batch, y))
        labels.append(y)
        if keep_inputs:
            inputs.append(x)
        kept.update({start + i: x[i] for i in range(max(0, min(len(y), keep_first - start)))})
        worst.add(scores[-1][1], start, x)
        start += len(y)
    kept.update(worst.inputs())
    k = _class_count(model)
    columns = list(zip(*scores)) if scores else [[]] * 4
    predicted, losses, confidence, brier = (np.concatenate(c) if len(c) else np.zeros((0,), kind)
                                            for c, kind in zip(columns, ("int64", "float64", "float64", "float64")))
    return Predictions(model_path=model_path, model=model, dataset=dataset, seed=seed, split=split,
                       log_p=(np.concatenate(log_p) if log_p else np.zeros((0, k))) if keep_log_p else None,
                       predicted=predicted, losses=losses, confidence=confidence, brier=brier,
                       labels=np.concatenate(labels) if labels else np.zeros((0,), "int64"),
                       preprocessing={**data.preprocessing, **(recorded if same_scale else {})},
                       inputs=(np.concatenate(inputs) if inputs else None) if keep_inputs else None, data=data,
                       kept=kept if (keep_worst or keep_first) and not keep_inputs else None,
                       images_in_split=data.size(split), reread=model_inputs)


def image_scores(log_p, labels):
    """Per image: the predicted class, -log p(true class), the top probability and the Brier term
    (sum_k (p_k - [k = true])^2), four arrays of shape (N,), from log-probabilities (N, classes)."""
    rows = np.arange(len(labels))
    probabilities = np.exp(log_p)
    target = np.zeros_like(probabilities)
    target[rows, labels] = 1.0
    return (log_p.argmax(axis=-1).astype("int64"), -log_p[rows, labels], probabilities.max(axis=-1),
            np.sum((probabilities - target) ** 2, axis=-1))


def _class_count(model):
    return int(model.output_shape[-1])


class _Worst:
    """The inputs of the `k` highest losses seen so far (ties to the earlier image), as batches stream by: the
    selection `numpy.argsort(-losses, kind="stable")[:k]` makes over the whole split, in fixed memory."""

    def __init__(self, k):
        self.k, self.losses, self.indices, self.x = k, np.zeros((0,)), np.zeros((0,), "int64"), None

    def add(self, losses, start, x):
        if not self.k:
            return
        losses = np.concatenate([self.losses, np.asarray(losses, "float64")])
        indices = np.concatenate([self.indices, start + np.arange(len(x))])
        x = x if self.x is None else np.concatenate([self.x, x])
        order = np.lexsort((indices, -losses))[:self.k]  # highest loss first, then the earlier image
        self.losses, self.indices, self.x = losses[order], indices[order], x[order]

    def inputs(self):
        return {} if self.x is None else {int(i): x for i, x in zip(self.indices, self.x)}


def _check_fits(model, data, dataset, recorded):
    """The model's recorded preprocessing, once the data set is known to fit it (shape, classes, names)."""
    expected = tuple(model.input_shape[1:])
    if any(m is not None and m != d for m, d in zip(expected, data.input_shape)):
        raise ValueError(
            f"The model takes inputs of shape {expected}, but {dataset!r} gives {tuple(data.input_shape)}; "
            f"pass {spell('image_size=(height, width)', '--image-size H W')} or the data set it was trained on."
        )
    num_classes = int(model.output_shape[-1])
    if num_classes != data.num_classes:
        raise ValueError(f"The model has {num_classes} classes but {dataset!r} has {data.num_classes}.")
    names = recorded.get("class_names")
    if names and data.preprocessing.get("class_names") and names != data.preprocessing["class_names"]:
        raise ValueError(
            f"{dataset!r} has the classes {data.preprocessing['class_names']}, but the model was trained on "
            f"{names}: the labels would not match."
        )
    return recorded


def evaluate(model_or_run, dataset=None, *, seed=None, batch_size=64, image_size=None, data_dir=None,
             download=False, split="test", out=None, overwrite=False):
    """Top-1 (and, for >= 20 classes, top-5) accuracy and mean cross-entropy of a model on a data set split.

    Args:
        model_or_run: a `.keras` file or a run folder (its `best.keras`).
        dataset: 'digits', a folder of class subfolders, or a TFDS name; by default the run's own
            (from run.json), with the run's seed, so the split is the run's test split.
        seed: the split's seed (default: the run's, else 0).
        image_size: `(height, width)` to resize to (default: the run's).
        split: 'test', 'validation' or 'train'.
        out: also write the result to this JSON file (atomically; an existing file only with `overwrite`).

    Inputs are standardised as `predictions` does.

    Returns:
        A dict: model, dataset, split, seed, num_examples, num_classes, top1, top5 (>= 20 classes), loss.
    """
    check_output_option(out, overwrite, "out")
    p = predictions(model_or_run, dataset, seed=seed, batch_size=batch_size, image_size=image_size,
                    data_dir=data_dir, download=download, split=split)
    log_p, labels = p.log_p, p.labels
    ranked = np.argsort(-log_p, axis=-1, kind="stable")
    result = {
        "model": p.model_path,
        "dataset": p.dataset,
        "split": split,
        "seed": p.seed,
        "num_examples": int(len(labels)),
        "num_classes": int(log_p.shape[-1]),
        "top1": float(np.mean(ranked[:, 0] == labels)),
        "loss": float(-np.mean(log_p[np.arange(len(labels)), labels])),
    }
    if log_p.shape[-1] >= 20:
        result["top5"] = float(np.mean((ranked[:, :5] == labels[:, None]).any(axis=1)))
    if out:
        write_json(out, result)
    return result


def check_output_option(path, overwrite, option):
    """Refuse, before any work, an output file (`option`: "out", "csv") that cannot be written safely, and
    `overwrite` without one (it would replace nothing).

    Args:
        path: the output file, or None (or "") when none is written.
        overwrite: whether an existing `path` may be replaced.
        option: the option's name in messages, e.g. "out" or "csv".

    Raises:
        ValueError: `overwrite` without `path`, or a `path` that cannot be written safely.
    """
    flag = spell("overwrite=True", "--overwrite")
    if path:
        check_output_file(path, option=spell(f"`{option}`", f"--{option}"), overwrite=overwrite, flag=flag)
    elif overwrite:
        name = spell(f"`{option}`", f"--{option}")
        raise ValueError(f"{flag} replaces the {name} file, and no {name} was given: it cannot take effect. Add "
                         f"{name} FILE, or leave it out.")


def _check_top_k(top_k, num_classes):
    if top_k > num_classes:
        raise ValueError(f"{spell('top_k', '--top-k')} {top_k} asks for more classes than the model's {num_classes} "
                         f"classes; accepted: 1 to {num_classes}.")


def image_files(inputs):
    """Image files named by `inputs` (files, or folders searched recursively), in the order given.

    Args:
        inputs: a path, or a list of paths, of image files and/or folders of images.

    Returns:
        A list of image file paths (strings).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a file is not an image, a folder holds no images, or `inputs` names nothing.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = list_images(item)
            if not found:
                raise ValueError(f"Folder {item!r} holds no images ({', '.join(IMAGE_FORMATS)}).")
            files.extend(found)
        elif os.path.isfile(item):
            if not is_image_file(item):
                raise ValueError(f"{item!r} is not an image file ({', '.join(IMAGE_FORMATS)}).")
            files.append(item)
        else:
            raise FileNotFoundError(f"No image file or folder at {item!r}.")
    if not files:
        raise ValueError("`inputs` must name at least one image file or folder.")
    return files


def _read_image(file):
    """The bytes of an image file as a tensor; an OSError (permission denied...) says so, naming the file."""
    import tensorflow as tf

    try:
        with open(file, "rb") as f:
            return tf.constant(f.read())
    except OSError as e:
        raise type(e)(f"Cannot read image {file!r}: {e.strerror or e}.") from None


def preprocess(files, preprocessing, input_shape):
    """Read image files and apply a run's recorded preprocessing: `(resize(raw) * scale - mean) / std`, the
    channels reversed first where `channel_order` is "BGR".

    Images are decoded as the training loader does (alpha dropped, converted to the model's
    channels) and resized to the recorded size, or to the model's input size when none was recorded
    and an image differs from it.  Returns float32 arrays, one per file.

    Args:
        files: paths of image files.
        preprocessing: the run's recorded preprocessing (metrics.json): `scale`, `mean`, `std`, and optionally
            `resize` and `channel_order`.
        input_shape: the model's input shape `(height, width, channels)`; height and width may be None.

    Returns:
        A list of float32 arrays `(height, width, channels)`, one per file (each at its own size when no size
            was recorded and the model takes any).

    Raises:
        ValueError: an image cannot be decoded.
    """
    import tensorflow as tf

    height, width, channels = input_shape
    size = tuple(preprocessing["resize"]) if preprocessing.get("resize") else (height, width)
    scale = preprocessing["scale"]
    arrays = []
    for file in files:
        try:
            image = decode_image(_read_image(file), channels)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
            raise ValueError(f"Cannot decode image {file!r}: {str(e).splitlines()[0]}") from None
        image = tf.cast(image, tf.float32) * scale
        if None not in size and (preprocessing.get("resize") or tuple(image.shape[:2]) != size):
            image = tf.image.resize(image, size)
        arrays.append(standardise(image.numpy(), preprocessing))
    return arrays


def digit_scans(files):
    """Images of handwritten digits made into the embedded digits' 8x8 scans (float32, values 0..16).

    The digits (UCI optdigits, scikit-learn's copy) are 32x32 bitmaps of the ink, counted in 4x4 blocks. Here an
    image is read as grey, inverted when its background is light (dark ink on paper), resized to 32x32
    (bilinear), thresholded at half intensity and counted the same way. (The original scans were also centred
    and size-normalised: crop an image to its digit for the best results.)

    Args:
        files: paths of image files, one handwritten digit each.

    Returns:
        A list of float32 arrays of shape (8, 8), one per file.

    Raises:
        ValueError: an image cannot be decoded.
    """
    import tensorflow as tf

    scans = []
    for file in files:
        try:
            image = tf.cast(decode_image(_read_image(file), 1), tf.float32) / 255.0
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
            raise ValueError(f"Cannot decode image {file!r}: {str(e).splitlines()[0]}") from None
        if float(tf.reduce_mean(image)) > 0.5:
            image = 1.0 - image
        ink = tf.image.resize(image, (32, 32)).numpy()[..., 0] >= 0.5
        scans.append(ink.reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype("float32"))
    return scans


def predict(model_or_run, inputs, *, top_k=5, batch_size=64, csv=None, overwrite=False):
    """The top-k classes of image files with their probabilities.

    Args:
        model_or_run: a run folder or a `.keras` file with the run's metrics.json beside it (the
            recorded preprocessing is needed).
        inputs: image files and/or folders of images (for a run on the embedded digits: images of one
            handwritten digit each, made into 8x8 scans as `digit_scans` describes).
        top_k: classes reported per image (at most the number of classes).
        csv: also write the rows to this CSV file (atomically; an existing file only with `overwrite`).

    Returns:
        Rows `{"file", "rank", "class_index", "class", "probability"}`, top_k per file, best first.
        `class` is the recorded class name (folder or TFDS label name), else the index.
    """
    top_k = check_positive_int("top_k", top_k)
    check_positive_int("batch_size", batch_size)
    check_output_option(csv, overwrite, "csv")
    model_path, run, metrics = resolve(model_or_run)
    preprocessing = metrics.get("preprocessing")
    if not preprocessing:
        raise ValueError(
            f"{model_path!r} has no metrics.json beside it recording its preprocessing; pass a finished run "
            "folder (or its best.keras)."
        )
    if isinstance(metrics.get("num_classes"), int):  # known before any image is read or the model loaded
        _check_top_k(top_k, metrics["num_classes"])
    files = image_files(inputs)
    model = _load(model_path)
    _check_top_k(top_k, int(model.output_shape[-1]))
    if metrics.get("dataset", run.get("dataset")) == "digits":  # images of digits, scanned as the digits were
        arrays = [standardise(scan[..., None] * preprocessing["scale"], preprocessing) for scan in digit_scans(files)]
    else:
        arrays = preprocess(files, preprocessing, tuple(model.input_shape[1:]))
    names = preprocessing.get("class_names")
    rows = []
    for start in range(0, len(arrays), batch_size):
        chunk = arrays[start:start + batch_size]
        same = len({a.shape for a in chunk}) == 1
        outputs = (model.predict_on_batch(np.stack(chunk)) if same
                   else np.concatenate([model.predict_on_batch(a[None]) for a in chunk]))
        probabilities = np.exp(_log_probabilities(model, outputs))
        for file, p in zip(files[start:start + batch_size], probabilities):
            for rank, index in enumerate(np.argsort(-p, kind="stable")[:top_k], start=1):
                rows.append({
                    "file": file,
                    "rank": rank,
                    "class_index": int(index),
                    "class": names[index] if names else str(int(index)),
                    "probability": float(p[index]),
                })
    if csv:
        write_csv(rows, csv, fieldnames=["file", "rank", "class_index", "class", "probability"])
    return rows
