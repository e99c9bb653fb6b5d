"""What a Keras weights file holds, and why it does not fit a model: one line a user can act on.

Keras 3 stores a model's variables (in a `.weights.h5` file, and as `model.weights.h5` inside a `.keras` file)
under one group per layer, at a path made of the layers' class names (`layers/conv2d_3/vars`), with the layer's
name as an attribute and its variables as `0, 1, ...`. Loading matches the paths; `mismatch` compares the
file's layers with the model's (saved the same way) and names the first layer that differs, with both shapes,
and says when the only difference is the classifier's width (another `num_classes`), as timm's
`load_checkpoint` lists missing and unexpected keys.
"""

import contextlib
import io
import logging
import os
import tempfile
import warnings
import zipfile

from lacnn_zoo.compat import flatten_layers

KERAS_WEIGHTS = "model.weights.h5"  # the weights inside a .keras file


@contextlib.contextmanager
def quietly():
    """Keras' warnings and log lines silenced, only for the block (a misfit file makes Keras warn once per nested
    container, 118 lines for EfficientNetB0, before it raises)."""
    logger = logging.getLogger("keras")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _open_h5(path):
    import h5py

    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            return h5py.File(io.BytesIO(archive.read(KERAS_WEIGHTS)), "r")
    return h5py.File(path, "r")


def entries(path):
    """`{group path: (layer name, [variable shapes])}` of a `.weights.h5` or `.keras` file's layers with variables
    (the optimizer's left out)."""
    import h5py

    found = {}
    with _open_h5(path) as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars" and not name.startswith("optimizer"):
                keys = sorted((k for k in obj if isinstance(obj[k], h5py.Dataset)), key=lambda k: int(k))
                if keys:
                    found[name.rsplit("/", 1)[0] if "/" in name else ""] = (
                        str(obj.attrs.get("name", name)), [tuple(obj[k].shape) for k in keys])
        f.visititems(visit)
    return found


def model_entries(model):
    """`entries` of `model`, saved the way Keras saves it (into a temporary file)."""
    with tempfile.TemporaryDirectory(prefix="lacnn-zoo-weights-") as folder:
        path = os.path.join(folder, "model.weights.h5")
        with quietly():
            model.save_weights(path)
        return entries(path)


def _shapes(shapes):
    return ", ".join(str(s) for s in shapes) or "no variable"


def _classes(model):
    try:
        return int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def mismatch(model, path):
    """Why the weights file `path` does not fit `model`, in one sentence; None when it cannot say (the file does
    not read as Keras weights, or the layers match and something else failed)."""
    try:
        ours, theirs = model_entries(model), entries(path)
    except Exception:  # noqa: BLE001  (a damaged or foreign file: the caller keeps Keras' own message)
        return None
    order = {layer.name: i for i, layer in enumerate(flatten_layers(model, include_self=True))}
    rank = lambda key: (order.get(ours[key][0], len(order)), key)  # noqa: E731
    differ = sorted((k for k in ours if k in theirs and ours[k][1] != theirs[k][1]), key=rank)
    missing = sorted((k for k in ours if k not in theirs), key=rank)
    unexpected = sorted(k for k in theirs if k not in ours)
    if not differ and not missing and not unexpected:
        return None
    classes = _classes(model)
    widths = {b[-1] for k in differ for a, b in zip(ours[k][1], theirs[k][1]) if a != b and b}
    only_last_axis = differ and not missing and not unexpected and all(
        len(ours[k][1]) == len(theirs[k][1]) and all(
            a == b or (len(a) == len(b) >= 1 and a[:-1] == b[:-1] and a[-1] == classes)
            for a, b in zip(ours[k][1], theirs[k][1]))
        for k in differ)
    if only_last_axis and len(widths) == 1:
        k = differ[0]
        return (f"the file was saved for {widths.pop()} classes and the model has num_classes={classes} (layer "
                f"{ours[k][0]!r}: {_shapes(ours[k][1])} in the model, {_shapes(theirs[k][1])} in the file); build the "
                "model with the file's num_classes")
    parts = []
    if differ:
        k = differ[0]
        named = (f"{ours[k][0]!r}" if ours[k][0] == theirs[k][0] else
                 f"{ours[k][0]!r} (the file's layer in its place is {theirs[k][0]!r})")
        parts.append(f"{len(differ)} layer(s) differ in shape, the first {named}: {_shapes(ours[k][1])} in the "
                     f"model, {_shapes(theirs[k][1])} in the file")
    if missing:
        parts.append(f"{len(missing)} of the model's {len(ours)} layers with weights are not in the file (the first "
                     f"{ours[missing[0]][0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} of the file's {len(theirs)} are not in the model (the first "
                     f"{theirs[unexpected[0]][0]!r})")
    return "; ".join(parts) + "; the file comes from another architecture"


def keras_reason(error):
    """Keras' message in one line: "A total of 1 objects could not be loaded. Example error message for object
    <Dense ...>:" is followed, after a blank line, by the reason; the list of objects is left out."""
    text = " ".join(str(error).split("List of objects that could not be loaded:")[0].split())
    return f"{type(error).__name__}: {text}".rstrip(" .:") if text else type(error).__name__
