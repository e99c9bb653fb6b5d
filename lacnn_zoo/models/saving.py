"""Loading what the zoo saves: `.keras` files of any zoo model, in any process."""

import os
import zipfile


def load_model(path, *, compile=True, safe_mode=True):
    """Load a `.keras` file written by the zoo (`lacnn-zoo train`, `tuning`, `model.save`).

    Importing `lacnn_zoo` registers every custom class, so `keras.saving.load_model`
    works too; this adds one-line errors for the usual mistakes (a missing file, a
    SavedModel folder, a file that is not a `.keras` archive).

    Args:
        path: a `.keras` file.
        compile: restore the optimizer, loss and metrics it was trained with.
        safe_mode: refuse Python lambdas stored in the file (Keras' default).

    Returns:
        The loaded `keras.Model`.

    Raises:
        FileNotFoundError: no file at `path`.
        PermissionError: the file cannot be read.
        ValueError: `path` is a folder, not a `.keras` archive, or cannot be loaded as a Keras model.
    """
    import keras

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(
            f"`path` must be a .keras file; {path!r} is a folder (a SavedModel loads with tf.saved_model.load)."
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    try:  # zipfile.is_zipfile says False for a file it cannot open: the cause is said here
        open(path, "rb").close()
    except OSError as e:
        raise PermissionError(f"The model file {path!r} cannot be read ({e.strerror or e}).") from None
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise ValueError(f"`path` must be a .keras archive written by Keras 3; {path!r} is not one.")
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=safe_mode)
    except Exception as e:  # a damaged or hostile archive surfaces as many exception types; nothing of it runs
        text = " ".join(str(e).split())[:300]
        raise ValueError(f"Could not load {path!r} as a Keras model (damaged, or holding code that safe mode "
                         f"refuses): {type(e).__name__}: {text}") from e
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path!r} holds a {type(model).__name__}, not a Keras model.")
    return model
