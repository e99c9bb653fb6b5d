"""Writing files without ever losing one: atomic writes, exclusive locks, ownership of what the zoo wrote.

- `atomic_path`: a file or folder appears complete or not at all.
- `FolderLock`: one writer at a time for a run folder, an export destination or a search project
  (`fcntl.flock`, so a lock dies with its process: there are no stale locks).
- `OWNER_MARKER`: every folder the zoo creates holds `.lacnn-zoo`; `check_replaceable` lets
  `--overwrite` replace only a folder that carries it AND holds nothing but the zoo's own files.
- `remove_stale_temporaries`: temporaries that a killed process left behind, removed at the next start.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import time

from lacnn_zoo.errors import ZooError

__all__ = ["LOCK_NAME", "OWNER_MARKER", "TMP_TAG", "DamagedFileError", "FolderLock", "ForeignFilesError", "LockedError",
    "atomic_path", "check_output_file", "check_readable_file", "check_replaceable", "damaged", "is_disk_full",
    "is_json_number", "is_owned", "is_temporary", "json_type", "mark_owned", "owned_files", "printable",
    "read_csv_checked", "read_json", "read_json_checked", "read_json_record", "remove_path", "remove_stale_temporaries",
    "swap_into_place", "unwritable", "write_csv", "write_json"]

OWNER_MARKER = ".lacnn-zoo"
TMP_TAG = ".lacnn-tmp"
# Temporaries of atomic_path: ".<name>.<8 hex>.lacnn-tmp[suffix]", and the earlier version's tempfile names
# ".<name>.<8 chars>.tmp[suffix]" for the files the zoo wrote then: a name the folder's owner knows as its own
# (its `known` predicate; nothing else is ever taken for a temporary).
_TEMPORARY = re.compile(rf"^\..+\.[0-9a-f]{{8}}{re.escape(TMP_TAG)}(\.keras|\.weights\.h5)?$")
_LEGACY_TEMPORARY = re.compile(r"^\.(.+)\.[0-9a-z_]{8}\.tmp(\.keras|\.weights\.h5)?$")
# The earlier version's report built ".<name>.lacnn-report-<8 chars>" (tempfile) and swap_into_place moved the
# previous folder aside as ".<name>.lacnn-old-<8 chars>": a kill left them beside the folder <name>.
_LEGACY_FOLDER_TEMPORARY = re.compile(r"^\.(.+)\.lacnn-(?:report|old)-[0-9a-z_]{8}$")
LOCK_NAME = ".lock"


class LockedError(ZooError):
    """Another process holds the lock of a folder the zoo writes."""


class ForeignFilesError(FileExistsError):
    """A folder the zoo was asked to replace holds files the zoo did not write."""


@contextlib.contextmanager
def atomic_path(path, *, suffix="", need_bytes=0):
    """Yield a temporary path beside `path`; on success it is renamed onto `path` (atomic on one filesystem).

    `suffix` keeps a file ending some writers insist on (".keras", ".weights.h5").
    On failure the temporary file or folder is removed and `path` is untouched;
    a write that failed because the disk is full is re-raised as `OSError(ENOSPC)`.
    `need_bytes` (an estimate of the file's size) is checked against the free
    space first, so a full disk is reported before h5py starts a doomed write.

    Args:
        path: the file or folder to write (a str or path-like); its folder is created when missing.
        suffix: an ending kept on the temporary's name, e.g. ".keras" or ".weights.h5".
        need_bytes: the expected size of what is written, checked against the free space first; 0 skips the check.

    Yields:
        The temporary path (a str) to write, in the same folder as `path`.

    Raises:
        OSError: `ENOSPC` when the disk has less than `need_bytes` free or fills up during the write.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:  # a file where a folder of the path should be, a folder that takes no new entry
        raise type(e)(f"{path!r} cannot be written: {unwritable(folder, e)}") from None
    if need_bytes and shutil.disk_usage(folder).free < need_bytes:
        raise OSError(errno.ENOSPC, f"No space left on the device to write {path!r} (about {need_bytes:,} bytes "
                      f"needed, {shutil.disk_usage(folder).free:,} free)")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}{TMP_TAG}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as e:
        if is_disk_full(e, folder):
            raise OSError(errno.ENOSPC, f"No space left on the device while writing {path!r}") from None
        if isinstance(e, OSError) and e.errno is not None and os.fspath(e.filename or "") == tmp:
            # The temporary is the zoo's business: the error names the file the caller asked for.
            raise type(e)(f"{path!r} cannot be written: {unwritable(folder, e)}") from None
        raise
    finally:
        remove_path(tmp)


def is_disk_full(error, folder):
    """h5py, Keras, TensorFlow and tf2onnx wrap ENOSPC in their own exceptions; recognise it by errno, message or
    free space (of the error or the error it was raised from).

    Args:
        error: the exception a write raised.
        folder: the folder written to; under 1 MiB free there means full when `error` names no cause.

    Returns:
        True when `error`, or the error it was raised from, is a full disk or an exceeded quota.
    """
    if error.__cause__ is not None and error.__cause__ is not error and is_disk_full(error.__cause__, folder):
        return True
    if isinstance(error, OSError) and error.errno is not None:  # the cause is known: only these are a full disk
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    if "No space left" in text or "errno = 28" in text:
        return True
    if re.search(r"errno = \d+", text):  # h5py names another cause
        return False
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def remove_path(path):
    """Remove the file, link or folder tree at `path`; nothing when there is none.

    Args:
        path: what to remove; a symbolic link is removed itself, never what it points to.
    """
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def write_json(path, data):
    """Write `data` to `path` as indented JSON with sorted keys, atomically (`atomic_path`).

    Args:
        path: the file to write.
        data: a JSON-serialisable value; values with a `tolist()` method (NumPy arrays and scalars) are converted.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=_jsonable)
            f.write("\n")


def write_csv(rows, path, fieldnames=None):
    """Rows (dicts) as a CSV file with a header, written atomically.

    Args:
        rows: the rows, one dict each (`csv.DictWriter`: a key not in `fieldnames` is a ValueError).
        path: the file to write.
        fieldnames: the columns, in order; None for the keys of the first row (then `rows` must not be empty).
    """
    import csv

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def read_json(path):
    """The JSON value in `path`, unchecked (`read_json_checked` names what is wrong with a damaged file).

    Args:
        path: the file to read.

    Returns:
        The decoded value: a dict, list, str, int, float, bool or None.
    """
    with open(path) as f:
        return json.load(f)


class DamagedFileError(ZooError, ValueError):
    """A file the zoo reads is not what the zoo writes there; the message names the file and what is wrong."""


def damaged(path, what):
    """The error that says a file the zoo reads is damaged.

    Args:
        path: the damaged file.
        what: what is wrong, a clause without its final period (e.g. "it is empty").

    Returns:
        A `DamagedFileError` (to raise) whose message is `'<path>' is damaged: <what>.`.
    """
    return DamagedFileError(f"{path!r} is damaged: {what}.")


_JSON_TYPES = {dict: "a JSON object", list: "a JSON list", str: "a string", bool: "true or false",
               type(None): "null", int: "a number", float: "a number"}


def is_json_number(value):
    """A JSON number as `json` reads it (an int or a float, never true/false).

    Args:
        value: any value.

    Returns:
        True when `value` is an int or a float and not a bool.
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def json_type(value):
    """What `value` is, in the words of an error message about a JSON file.

    Args:
        value: a value read from JSON.

    Returns:
        A phrase such as "a JSON object", "a JSON list", "a string" or "a number"; the type's name for a type
        JSON does not have.
    """
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _read_text(path):
    """The text of `path`; DamagedFileError naming the first byte that is not UTF-8 text."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise damaged(path, f"byte {data[e.start]:#04x} at offset {e.start} is not UTF-8 text (a binary file?)") \
            from None


def read_json_checked(path, kind=dict):
    """The JSON value in `path`, of type `kind` (dict or list) at its top level; DamagedFileError naming the file
    and what is wrong otherwise (empty, not text, not JSON, another type).

    Args:
        path: the JSON file to read.
        kind: the type required at the top level, `dict` or `list`.

    Returns:
        The decoded value, an instance of `kind`.

    Raises:
        DamagedFileError: the file is empty, not UTF-8 text, not JSON, or holds another type.
    """
    text = _read_text(path)
    if not text.strip():
        raise damaged(path, "it is empty")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise damaged(path, f"it is not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(value, kind):
        raise damaged(path, f"it holds {json_type(value)}, not {_JSON_TYPES[kind]}")
    return value


def read_json_record(path, types):
    """The JSON object in `path`, each key of `types` present in it of its type (`types[key]`: a check and what
    it accepts); DamagedFileError naming the file and the first key that is not.

    Args:
        path: the JSON file to read; it must hold an object.
        types: `{key: (check, accepted)}`: `check(value)` says whether the key's value is valid and `accepted`
            describes the valid values for the message. A key absent from the file is not checked.

    Returns:
        The JSON object, a dict.

    Raises:
        DamagedFileError: the file is not a JSON object, or a key of `types` holds a value its check refuses.
    """
    record = read_json_checked(path)
    for key, (check, accepted) in types.items():
        if key in record and not check(record[key]):
            shown = repr(record[key])
            raise damaged(path, f"{key!r} is {shown if len(shown) <= 60 else shown[:57] + '...'}, not {accepted}")
    return record


def read_csv_checked(path, *, numeric=(), complete_lines=False):
    """`(header, rows)` of a CSV file the zoo wrote: rows as lists of strings, blank lines skipped; `(None, [])`
    for a file with no text. Every row has the header's length and each column in `numeric` (all for True)
    holds a number or nothing ("" or Keras' "NA", both read as ""); DamagedFileError naming the file, row and
    column otherwise. `complete_lines`: a last line without its end (a writer killed mid-line) is ignored.

    Args:
        path: the CSV file to read.
        numeric: the names of the columns that must hold numbers (names not in the header are ignored), or
            True for every column.
        complete_lines: ignore a last line that does not end with a newline.

    Returns:
        `(header, rows)`: the header as a list of strings (None for a file without text) and the rows as lists
        of strings, "NA" and blank numeric cells written "".

    Raises:
        DamagedFileError: the file is not UTF-8 text, holds NUL bytes, or has a row of the wrong length or a
            numeric column holding something else.
    """
    import csv

    text = _read_text(path)
    if complete_lines and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    if "\x00" in text:
        raise damaged(path, "it holds NUL bytes (a binary file?)")
    lines = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if not lines:
        return None, []
    header, rows = lines[0], lines[1:]
    checked = range(len(header)) if numeric is True else [header.index(c) for c in numeric if c in header]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise damaged(path, f"row {number} has {len(row)} fields; its header has {len(header)}")
        for i in checked:
            row[i] = "" if row[i].strip() in ("", "NA") else row[i]
            try:
                float(row[i] or 0)
            except ValueError:
                raise damaged(path, f"row {number}, column {header[i]!r}: {row[i]!r} is not a number") from None
    return header, rows


def printable(text):
    """`text` (a path, perhaps holding bytes that are not UTF-8) as text any UTF-8 page or terminal shows:
    such a byte is written \\xff.

    Args:
        text: a str, perhaps holding surrogate escapes (`os.fsdecode` of bytes that are not UTF-8).

    Returns:
        The text as a str that encodes to UTF-8.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class FolderLock:
    """An exclusive, non-blocking lock on `lock_path` held for the life of a `with` block.

    A second holder (another process, or another open in this one) fails at once
    with `LockedError` naming what is locked and by which pid.  `flock` locks are
    released by the kernel when their process dies, so a killed run never leaves
    a stale lock; the lock file itself is removed on release.

    Args:
        lock_path: the lock file, created (with its folder) on entry and removed on release.
        what: what the lock guards, as error messages name it (e.g. "Run folder 'runs/x'").
    """

    def __init__(self, lock_path, what):
        self.lock_path = os.fspath(lock_path)
        self.what = what
        self._fd = None

    def __enter__(self):
        folder = os.path.dirname(os.path.abspath(self.lock_path))
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise ZooError(f"{self.what} cannot be created or written: {unwritable(folder, e)}") from None
        os.close(fd)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise LockedError(
                    f"{self.what} is in use by another lacnn-zoo process (pid {holder}); wait for it to finish "
                    "or choose another folder."
                ) from None
            # The holder before us may have removed the file between our open and our lock: retry on the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.lock_path)
        os.close(self._fd)
        self._fd = None
        return False


def check_output_file(path, *, option, overwrite=False, flag="--overwrite"):
    """Refuse, before any work, a file path the user named (`option`, e.g. "--out") that cannot be written safely.

    A directory, a symlink and a path under a file are refused; an existing file is replaced (atomically, by
    `write_json`/`write_csv`) only with `overwrite`, since the zoo cannot tell a file it wrote from one it did not.
    `flag` names the way to allow it, or None where the command has none. Returns the path.

    Args:
        path: the file the user named (a str or path-like).
        option: how the user named it, for the messages (e.g. "--out").
        overwrite: whether an existing file may be replaced.
        flag: the option that allows replacing a file, named in the message; None where there is none.

    Returns:
        `path` as a str.

    Raises:
        FileExistsError: `path` is a symbolic link, or exists and `overwrite` is False.
        IsADirectoryError: `path` is a folder.
        NotADirectoryError: a parent of `path` is a file.
        PermissionError: its folder does not take a new file.
    """
    path = os.fspath(path)
    shown = f"{option} {path!r}"
    if os.path.islink(path):
        raise FileExistsError(f"{shown} is a symbolic link; lacnn-zoo writes only regular files it creates. "
                              "Choose another path.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{shown} is a folder; name a file inside it.")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise NotADirectoryError(f"{shown} is under {parent!r}, which is a file, not a folder.")
    if os.path.exists(path) and not overwrite:
        how = f"pass {flag} to replace it" if flag else "choose another path"
        raise FileExistsError(f"{shown} already exists and lacnn-zoo does not replace a file it did not write; "
                              f"{how}.")
    try:  # the folder must take a new file (the temporary the write goes through): said now, not after the work
        probe = os.path.join(parent, f".{os.path.basename(path)}.{secrets.token_hex(4)}{TMP_TAG}")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.remove(probe)
    except OSError as e:
        raise PermissionError(f"{shown} cannot be written: {unwritable(parent, e)}") from None
    return path


def check_readable_file(path, shown, what):
    """Refuse `path` (`shown`: the argument as the caller named it; `what`: what it must be, e.g. "a .keras
    file") when it is a folder, missing or unreadable: the readers (Keras, the runtimes) would blame the file.

    Args:
        path: the file to check.
        shown: the argument as the caller named it, starting each message (e.g. "--weights").
        what: what `path` must be, with its article (e.g. "a .keras file"); the article is dropped for a
            missing file.

    Returns:
        `path`, unchanged.

    Raises:
        IsADirectoryError: `path` is a folder.
        FileNotFoundError: `path` is not an existing file.
        PermissionError: `path` cannot be opened for reading.
    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"{shown} {path!r} is a folder; pass {what}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{shown} {path!r} does not exist; pass an existing {what.split(' ', 1)[1]}.")
    try:
        open(path, "rb").close()
    except OSError as e:
        raise PermissionError(f"{shown} {path!r} cannot be read ({e.strerror or e}).") from None
    return path


def unwritable(path, error):
    """Why `path` (a folder to create or write) failed with `error`, in terms of the user's path.

    Args:
        path: the folder that could not be created or written.
        error: the OSError it failed with.

    Returns:
        A sentence (a str ending with a period) naming the nearest existing folder and what to do.
    """
    existing = os.path.abspath(path)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing!r} is a file, not a folder."
    if existing.startswith(("/proc", "/sys")) or error.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        return (f"{existing!r} does not accept new files ({error.strerror or 'not writable'}); choose a folder "
                "you can write to.")
    return f"{error.strerror or error} under {existing!r}; choose a folder you can write to."


def mark_owned(folder, kind, files=None):
    """Record that the zoo created `folder` (a run, an export or a search), so `--overwrite` may replace it;
    `files`: the entries the zoo wrote there (where it must never take another entry for its own).

    Args:
        folder: the existing folder; the marker `.lacnn-zoo` is written (atomically) into it.
        kind: what the folder is: "run", "export", "search", ...
        files: the names of the entries the zoo wrote there, recorded sorted; None to record no list.
    """
    record = {"kind": kind, "created": time.time()}
    if files is not None:
        record["files"] = sorted(files)
    write_json(os.path.join(folder, OWNER_MARKER), record)


def _marked_kind(folder):
    """The kind ("run", "report", ...) the zoo's marker in `folder` records, or None."""
    try:
        record = read_json(os.path.join(folder, OWNER_MARKER))
    except (OSError, ValueError):
        return None
    return record.get("kind") if isinstance(record, dict) and isinstance(record.get("kind"), str) else None


def owned_files(folder, kind):
    """The entries `folder`'s marker records the zoo writing there as a `kind`: None when there is no such
    marker, [] for a marker without a list (an earlier version's).

    Args:
        folder: the folder whose marker is read.
        kind: the kind the marker must record ("run", "export", "search", ...).

    Returns:
        A list of entry names (the marker, "", ".", ".." and names holding a path separator left out), [] or
        None.
    """
    try:
        record = read_json(os.path.join(folder, OWNER_MARKER))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("kind") != kind:
        return None
    files = record.get("files", [])
    if not isinstance(files, list):
        return []
    return [f for f in files if isinstance(f, str) and f not in ("", ".", "..", OWNER_MARKER) and os.sep not in f]


def is_owned(folder, kind, signature=None):
    """Whether the zoo wrote `folder` as a `kind` ("run", "export", "search"): its marker says so, or (exports,
    and folders written before the marker existed) `signature`, the file only such a folder holds, is there.

    Args:
        folder: the folder to look at.
        kind: the kind its marker must record.
        signature: the name of a file only a `kind` folder holds; None to trust the marker alone.

    Returns:
        True when the marker records `kind` or `signature` exists in `folder`.
    """
    try:
        if read_json(os.path.join(folder, OWNER_MARKER)).get("kind") == kind:
            return True
    except (OSError, ValueError, AttributeError):
        pass
    return signature is not None and os.path.exists(os.path.join(folder, signature))


def check_replaceable(folder, kind, known, signature, *, flag="--overwrite"):
    """Refuse to replace `folder` unless the zoo wrote it as a `kind` and it holds only the zoo's files.

    `known(name)` says whether an entry belongs to a `kind` folder; `signature` is the file only such a folder
    holds.  Raises `ForeignFilesError` naming what is in the way; returns the entries to remove.

    Args:
        folder: the folder to replace.
        kind: the kind it must be ("run", "export", "search").
        known: a callable, `known(name)` True for an entry name a `kind` folder holds.
        signature: the name of the file only a `kind` folder holds (see `is_owned`), or None.
        flag: the option that asked for the replacement, named in the message.

    Returns:
        The sorted names of every entry of `folder` (the marker, the lock and temporaries included).

    Raises:
        ForeignFilesError: `folder` is not a folder, is not a `kind` folder of the zoo, or holds other entries.
    """
    if not os.path.isdir(folder):
        raise ForeignFilesError(f"{folder!r} exists and is not a folder; {flag} replaces only what lacnn-zoo wrote.")
    entries = sorted(os.listdir(folder))
    recognised = is_owned(folder, kind, signature)
    foreign = [e for e in entries if not (e in (OWNER_MARKER, LOCK_NAME) or known(e) or is_temporary(e, known))]
    if not recognised or foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        article = "an" if kind[0] in "aeiou" else "a"
        other = _marked_kind(folder)
        if not recognised and other not in (None, kind):  # the zoo's, but another command's: said so
            why = f"it is a lacnn-zoo {other} folder, not {article} {kind} folder"
        else:
            why = f"it holds files lacnn-zoo did not write ({shown})" if foreign else f"it is not a lacnn-zoo {kind}"
        raise ForeignFilesError(
            f"Refusing to replace {folder!r}: {why}. {flag} replaces only {article} {kind} folder written by "
            "lacnn-zoo; choose another folder or move those files away."
        )
    return entries


def is_temporary(name, known=None):
    """A temporary of `atomic_path`, or of the earlier version for a file `known(name)` says the zoo writes.

    Args:
        name: an entry name (not a path).
        known: a callable, `known(name)` True for the names the folder's owner writes; None to recognise only
            `atomic_path`'s temporaries.

    Returns:
        True when `name` is such a temporary.
    """
    legacy = _LEGACY_TEMPORARY.match(name) or _LEGACY_FOLDER_TEMPORARY.match(name)
    return bool(_TEMPORARY.match(name) or (legacy and known is not None and known(legacy.group(1))))


def remove_stale_temporaries(folder, *, recursive_into=(), known=None):
    """Remove the zoo's temporaries left in `folder` (and its sub-folders `recursive_into`) by a killed process;
    `known(name)`: the file names the folder's owner writes (for the earlier version's temporaries).

    Call it only while holding the folder's lock: then no live process is writing them.

    Args:
        folder: the folder to clean.
        recursive_into: names of sub-folders of `folder` cleaned too (one level each; missing ones skipped).
        known: a callable, `known(name)` True for the names the folder's owner writes (see `is_temporary`).

    Returns:
        The paths removed, as a list of str relative to `folder`.
    """
    removed = []
    for sub in ("", *recursive_into):
        where = os.path.join(folder, sub)
        if not os.path.isdir(where):
            continue
        for name in os.listdir(where):
            if is_temporary(name, known):
                remove_path(os.path.join(where, name))
                removed.append(os.path.join(sub, name))
    return removed


def swap_into_place(tmp, destination):
    """Rename the finished folder `tmp` to `destination`; a previous `destination` is moved aside first and
    removed only after (a kill in between leaves it beside, as `.<name>.lacnn-old-*`).

    Args:
        tmp: the finished folder, on the same file system as `destination`; it takes the mode of a previous
            `destination` folder.
        destination: the path it is renamed to.
    """
    import shutil
    import tempfile

    old = None
    if os.path.isdir(destination) and not os.path.islink(destination):
        with contextlib.suppress(OSError):  # the replacement keeps the mode the folder had (a group's setgid bit)
            os.chmod(tmp, os.stat(destination).st_mode & 0o7777)
    if os.path.lexists(destination):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(destination)}.lacnn-old-",
                               dir=os.path.dirname(destination))
        os.rmdir(old)
        os.rename(destination, old)
    os.rename(tmp, destination)
    if old:
        shutil.rmtree(old, ignore_errors=True)
