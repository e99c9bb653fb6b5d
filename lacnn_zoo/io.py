"""Atomic writes: a file or folder appears complete or not at all; nothing is overwritten unless asked."""

import contextlib
import json
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path, *, suffix=""):
    """Yield a temporary path beside `path`; on success it is renamed onto `path` (atomic on one filesystem).

    `suffix` keeps a file ending some writers insist on (".keras", ".weights.h5").
    On failure the temporary file or folder is removed and `path` is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=folder)
    os.close(fd)
    os.remove(tmp)  # writers (Keras, h5py, SavedModel) create it themselves
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=_jsonable)
            f.write("\n")


def write_csv(rows, path, fieldnames=None):
    """Rows (dicts) as a CSV file with a header, written atomically."""
    import csv

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
