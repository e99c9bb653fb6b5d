"""The public API, written down: every name in the `__all__` of the public modules, with its signature.

    python -m lacnn_zoo._api docs/api/public-api.txt     # rewrite the checked-in listing
    python -m lacnn_zoo._api --site build/site           # exit 1 naming the public names the site leaves out

CI rewrites the listing and fails when `git diff --exit-code docs/api/public-api.txt` shows a difference (as
Keras' `api_gen` keeps its golden API files), and tests/test_api.py compares the two: removing a name or changing a
signature is then a deliberate edit of the listing, with a line in CHANGELOG.md (see lacnn_zoo/_deprecation.py
for keeping a moved name working).
"""

import importlib
import inspect
import re
import sys

# The modules users and the zoo's own packages (tuning/, export/) import from.  Everything else is internal and
# may change without notice; the import contracts in setup.cfg keep tuning/ and export/ on these.
PUBLIC_MODULES = (
    "lacnn_zoo",
    "lacnn_zoo.layers",
    "lacnn_zoo.models",
    "lacnn_zoo.models.resnet",
    "lacnn_zoo.data",
    "lacnn_zoo.training",
    "lacnn_zoo.training.diagnostics",
    "lacnn_zoo.training.distribute",
    "lacnn_zoo.training.inference",
    "lacnn_zoo.training.monitor",
    "lacnn_zoo.training.search_project",
    "lacnn_zoo.experiments",
    "lacnn_zoo.experiments.study",
    "lacnn_zoo.compat",
    "lacnn_zoo.errors",
    "lacnn_zoo.io",
    "lacnn_zoo.launch",
    "lacnn_zoo.options",
    "lacnn_zoo.plotting",
    "lacnn_zoo.validation",
    "export",
    "tuning",
)

HEADER = ("# The public API of lacnn-zoo: `python -m lacnn_zoo._api docs/api/public-api.txt` writes this file.\n"
          "# A removal or a changed signature here is a deliberate change: say it in CHANGELOG.md.\n")


def _signature(obj):
    try:
        text = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return None
    return re.sub(r" at 0x[0-9a-f]+", "", text)  # object addresses of defaults differ between processes


def describe(name, obj):
    """One line: the kind of `obj`, its name and its signature (or its type, for a constant)."""
    if inspect.isclass(obj):
        return f"class {name}{_signature(obj) or ''}"
    if inspect.ismodule(obj):
        return f"module {name}"
    if callable(obj):
        return f"def {name}{_signature(obj) or '(...)'}"
    return f"{name}: {type(obj).__name__}"


def listing():
    """The public API as text: one block per public module, one line per name of its `__all__`, sorted."""
    blocks = [HEADER]
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        lines = [f"\n[{module_name}]"]
        for name in sorted(module.__all__):
            lines.append(describe(name, getattr(module, name)))
        blocks.append("\n".join(lines) + "\n")
    return "".join(blocks)


def undocumented_on_site(site):
    """The public names that the built API reference (`mkdocs build`) renders nowhere.

    Args:
        site: the folder `mkdocs build` wrote.

    Returns:
        A sorted list of `module.name`: each public name whose heading (anchor `module.name`, or the defining
        module's `module.qualname`) is on no page under `site/api/`.
    """
    import glob
    import os

    anchors = set()
    for page in glob.glob(os.path.join(site, "api", "**", "*.html"), recursive=True):
        with open(page, encoding="utf-8") as f:
            anchors.update(re.findall(r'id="([^"]+)"', f.read()))
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name.startswith("__"):
                continue  # __version__: said on the zoo's page
            obj = getattr(module, name)
            if not any(_renders(anchor, name, obj) for anchor in anchors):
                missing.append(f"{module_name}.{name}")
    return sorted(missing)


def _renders(anchor, name, obj):
    """Whether the heading `anchor` (a dotted path) is `obj`: its last part is `name` and the module it names
    holds `obj` under that name (a re-export or the defining module)."""
    module_name, _, last = anchor.rpartition(".")
    if last != name or not module_name:
        return False
    try:
        return getattr(importlib.import_module(module_name), name, None) is obj
    except ImportError:
        return False


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--site":
        missing = undocumented_on_site(argv[1])
        for name in missing:
            print(f"{name}: public, but on no page of the API reference (docs/api/)", file=sys.stderr)
        return 1 if missing else 0
    if len(argv) != 1:
        print("usage: python -m lacnn_zoo._api PATH | --site SITE_FOLDER", file=sys.stderr)
        return 2
    text = listing()
    with open(argv[0], "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{argv[0]}: {text.count(chr(10) + '[')} modules, "
          f"{sum(1 for line in text.splitlines() if line and line[0] not in '#[')} names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
