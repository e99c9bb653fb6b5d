"""Import paths that earlier versions documented and this one moved: each keeps working, with a
`DeprecationWarning` naming its new home and the version that removes it.

The public API is a contract (see CHANGELOG.md): a documented name is removed or renamed only through an entry
here, kept for at least one minor version, and a line in the changelog.  Each old module is a file of three lines
(`lacnn_zoo/monitor.py`, ...) that hands its attributes over to `moved_module`.
"""

import importlib
import warnings

DEPRECATED_IN = "0.2.0"
REMOVED_IN = "0.3.0"

# old module -> its new home (the module whose attributes it forwards).
MOVED_MODULES = {
    "lacnn_zoo.monitor": "lacnn_zoo.training.monitor",
    "lacnn_zoo.study": "lacnn_zoo.experiments.study",
    "lacnn_zoo.distribute": "lacnn_zoo.training.distribute",
    "lacnn_zoo.bench_aa": "lacnn_zoo.experiments.bench_aa",
}

# names that also have a shorter home now: the top level of the package.
TOP_LEVEL = ("layer_weights", "LayerAttentionMonitor", "plot_layer_attention", "is_layer_attended")


def new_path(old_module, name):
    """Where `old_module.name` lives now, as the user should import it."""
    if name in TOP_LEVEL:
        return f"lacnn_zoo.{name}"
    return f"{MOVED_MODULES[old_module]}.{name}"


def warn_moved(old, new, stacklevel=3):
    warnings.warn(f"{old} is deprecated since lacnn-zoo {DEPRECATED_IN} and will be removed in {REMOVED_IN}: "
                  f"use {new}", DeprecationWarning, stacklevel=stacklevel)


def moved_module(old_module):
    """`(__getattr__, __dir__)` for the old module: every public attribute of its new home, each access warned."""
    new_module = MOVED_MODULES[old_module]

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        target = importlib.import_module(new_module)
        if not hasattr(target, name):
            raise AttributeError(f"module {old_module!r} has no attribute {name!r} "
                                 f"(it moved to {new_module}, which has none either)")
        warn_moved(f"{old_module}.{name}", new_path(old_module, name))
        return getattr(target, name)

    def __dir__():
        target = importlib.import_module(new_module)
        return sorted(getattr(target, "__all__", None) or [n for n in dir(target) if not n.startswith("_")])

    return __getattr__, __dir__


def run_moved_main(old_module):
    """`python -m OLD_MODULE ...`: warn (shown: the warning is raised in __main__), then run the new module."""
    new_module = MOVED_MODULES[old_module]
    warn_moved(f"python -m {old_module}", f"python -m {new_module}", stacklevel=3)
    return importlib.import_module(new_module).main()
