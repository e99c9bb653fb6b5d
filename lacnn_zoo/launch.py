"""How the process was launched, and a quiet TensorFlow start for the zoo's own command lines (no Keras here).

`import lacnn_zoo` registers every serializable class eagerly, which loads Keras and TensorFlow (seconds).
The zoo's command lines (`lacnn-zoo`, `lacnn-zoo-tune`, `lacnn-zoo-export`, `python -m lacnn_zoo`,
`python -m tuning`, `python -m export`) must answer `--help` and `lacnn-zoo list` without that cost, so when
the process *is* one of them the package skips its eager imports (see `lacnn_zoo/__init__.py`) and the
command line calls `register_all()` itself before running a command.  Every other importer (a script, a
notebook, pytest, a worker process) gets the eager registration, unchanged.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

__all__ = ["CONSOLE_SCRIPTS", "MODULES", "filtered_stderr", "launched_as", "quiet_registration", "quiet_requested",
           "register_all", "start_quietly"]

CONSOLE_SCRIPTS = {"lacnn-zoo": "lacnn-zoo", "lacnn-zoo-tune": "tuning", "lacnn-zoo-export": "export"}
MODULES = {"lacnn_zoo": "lacnn-zoo", "tuning": "tuning", "export": "export"}
def _dash_m_module(orig_argv):
    """The module of `python [options] -m MODULE ...`, or None (a script, `-c`, the REPL)."""
    words = list(orig_argv[1:])
    while words:
        word = words.pop(0)
        if word == "--check-hash-based-pycs":  # the one long option with a value
            words = words[1:]
            continue
        if word.startswith("--") or not word.startswith("-") or word == "-":
            return None  # --version, a script, stdin
        for i, letter in enumerate(word[1:], start=1):  # short options, possibly grouped (-Im)
            rest = word[i + 1:]
            if letter == "m":
                return rest or (words[0] if words else None)
            if letter == "c":
                return None
            if letter in "XW":  # their value (-X importtime, -Wignore) is not the module
                if not rest:
                    words = words[1:]
                break
    return None


def launched_as(argv=None, orig_argv=None):
    """'lacnn-zoo', 'tuning' or 'export' when this process is that command line of the zoo, else None.

    Args:
        argv: the process's arguments, its script first; None for `sys.argv`.
        orig_argv: the interpreter's own command line (for `python -m MODULE`); None for `sys.orig_argv`.

    Returns:
        The command line's name ('lacnn-zoo', 'tuning' or 'export'), or None.
    """
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    script = os.path.basename(argv[0]) if argv else ""
    script = re.sub(r"(-script\.pyw?|\.exe)$", "", script)  # the console-script wrappers on Windows
    if script in CONSOLE_SCRIPTS:
        return CONSOLE_SCRIPTS[script]
    return MODULES.get(_dash_m_module(orig_argv) or "")


def register_all():
    """What `import lacnn_zoo` does outside the command lines: every model preset and serializable class.

    Returns:
        What `lacnn_zoo.register_all()` returns (None).
    """
    import lacnn_zoo  # lazy: lacnn_zoo/__init__.py imports this module (import cycle)

    return lacnn_zoo.register_all()


# TensorFlow's start-up lines on stderr (absl's C++ logging ignores TF_CPP_MIN_LOG_LEVEL before its
# InitializeLog): the banner, INFO/WARNING records ("oneDNN custom operations are on", "Could not find cuda
# drivers") and, on a machine without a usable GPU, the cuInit failure.
_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                    r"|[IW]\d{4} [\d:. ]+\d+ [\w./-]+:\d+\] .*"
                    r"|E\d{4} [\d:. ]+\d+ [\w./-]+:\d+\] failed call to cuInit: .*"
                    # the LiteRT converter's and interpreter's own lines (an int8 export printed 34 of them)
                    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
                    r"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, "
                    r"output_inference_type: \w+)$")


def quiet_requested():
    """Start TensorFlow quietly unless the user asked for its logs (TF_CPP_MIN_LOG_LEVEL 0 or 1).

    Sets `TF_CPP_MIN_LOG_LEVEL` to "2" where the environment does not set it.

    Returns:
        True unless `TF_CPP_MIN_LOG_LEVEL` is "0" or "1".
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return os.environ["TF_CPP_MIN_LOG_LEVEL"] not in ("0", "1")


@contextlib.contextmanager
def filtered_stderr(active=True):
    """Route file descriptor 2 to a temporary file; afterwards write back every line that is not start-up noise.

    Args:
        active: whether to filter; False leaves stderr alone.
    """
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not _NOISE.match(line.rstrip("\n"))]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def start_quietly():
    """On the zoo's command lines: register the zoo (loading Keras and TensorFlow) with TensorFlow's start-up
    chatter filtered out. Elsewhere (`import lacnn_zoo` registered eagerly, e.g. a test calling `main`) nothing."""
    if launched_as() is None:
        return
    quiet_registration(register_all)


def quiet_registration(register):
    """Call `register` (which loads Keras and TensorFlow) with TensorFlow's start-up lines filtered out of stderr
    and its device scan (cuInit) done inside the filter; any other line on stderr is written back. Unless the user
    asked for TensorFlow's logs (`TF_CPP_MIN_LOG_LEVEL` 0 or 1), which then pass untouched. `import lacnn_zoo`
    and the zoo's command lines start this way.

    Args:
        register: the function to call.
    """
    quiet = quiet_requested()
    with filtered_stderr(quiet):
        register()
        tf = sys.modules.get("tensorflow")
        if tf is not None and quiet:
            # cuInit happens here, inside the filter; listing physical devices leaves the runtime unconfigured
            # (tf.config.set_visible_devices and logical devices can still be set afterwards).
            tf.config.list_physical_devices("GPU")
    if quiet:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        absl = sys.modules.get("absl.logging")
        if absl is not None:
            absl.set_verbosity(absl.ERROR)
