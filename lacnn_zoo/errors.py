"""One line for every expected failure of the command-line tools; the traceback only with --debug."""

import contextvars
import errno
import os
import sys

__all__ = ["EXPECTED", "ZooError", "one_line", "run_command", "spell"]

_DISK = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
         errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}


class ZooError(RuntimeError):
    """A failure the user can act on (a locked folder, data not prepared, an export that disagrees...)."""


# Exception types that mean "the user's input or machine", not "a bug in the zoo".
EXPECTED = (ZooError, ValueError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, FloatingPointError)


def one_line(error):
    """The message of `error` on one line, for `prog: error: <message>`.

    Args:
        error: an exception.

    Returns:
        Its text with every run of whitespace made one space (its type's name when it has none); for an
        OSError of a full disk, an exceeded quota, a read-only file system or a refused permission, a sentence
        saying so, naming the file and that what was saved is intact.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.errno in _DISK:
        where = f" ({error.filename})" if error.filename else ""
        hint = "; free some space, then continue a training run with --resume" if error.errno == errno.ENOSPC else ""
        text = f"{error.strerror or _DISK[error.errno]}{where}. Files saved before this point are intact{hint}."
    return text


_ON_COMMAND_LINE = contextvars.ContextVar("lacnn_zoo_on_command_line", default=False)


def spell(python, cli):
    """An option as the caller wrote it: the command-line flag inside a command, the Python argument outside.

    Args:
        python: the option as the Python argument (e.g. "`batch_size`").
        cli: the option as the command-line flag (e.g. "--batch-size").

    Returns:
        `cli` while `run_command` runs a command, `python` otherwise.
    """
    return cli if _ON_COMMAND_LINE.get() else python


def run_command(prog, function, args, *, code=2):
    """Call `function(args)`; expected failures print `prog: error: <one line>` and return `code`.

    Anything else is a bug: one line saying so (the traceback with `--debug`), exit 1.
    An interrupt returns 130 with what to do next.

    Args:
        prog: the command's name, starting each message.
        function: the command, called as `function(args)`.
        args: the parsed arguments; `args.debug` (or `LACNN_ZOO_DEBUG=1`) lets every exception through unchanged.
        code: the exit status of an expected failure.

    Returns:
        The exit status: what `function` returned, `code` for an expected failure, 1 for a bug, 130 for an
        interrupt.
    """
    debug = bool(getattr(args, "debug", False)) or os.environ.get("LACNN_ZOO_DEBUG") == "1"
    token = _ON_COMMAND_LINE.set(True)
    try:
        return function(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; what was saved is intact (a training run continues with --resume).",
              file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (sorted into expected and unexpected below)
        if debug:
            raise
        disk = isinstance(e, OSError) and e.errno in _DISK
        if disk or isinstance(e, EXPECTED):
            print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
            return code
        print(f"{prog}: internal error: {type(e).__name__}: {one_line(e)} (rerun with --debug for the traceback; "
              "please report it)", file=sys.stderr)
        return 1
    finally:
        _ON_COMMAND_LINE.reset(token)
