"""The preset tables of docs/models/ and lacnn_zoo/models/catalogue.json, generated from the registry.

    python -m lacnn_zoo.models.catalogue           # rewrite the tables and catalogue.json in place
    python -m lacnn_zoo.models.catalogue --check   # exit 1 naming the stale files, 0 when all are fresh

Each family page `docs/models/<family>.md` holds its table between the marker comments
`<!-- presets start -->` and `<!-- presets end -->`: one row per preset with its name, its parameter count
(10 classes, the preset's default input shape: `model_info(name).num_params()`, the model built without
allocating a weight) and the
first line of its description. `catalogue.json` holds the same rows, sorted by name, for readers that must
not import TensorFlow.
"""

import argparse
import json
import os
import re
import sys

from lacnn_zoo.models.registry import list_models, model_info

NUM_CLASSES = 10
START = "<!-- presets start -->"
END = "<!-- presets end -->"
JSON_PATH = os.path.join("lacnn_zoo", "models", "catalogue.json")
PAGES = os.path.join("docs", "models")

_ROWS = None


def default_root():
    """The checkout this module lives in when it has docs/models/, else the current folder."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return here if os.path.isdir(os.path.join(here, PAGES)) else os.getcwd()


def catalogue_rows():
    """One dict per registered preset (name, family, params, description), sorted by name; computed once."""
    global _ROWS
    if _ROWS is None:
        import keras

        rows = []
        for name in list_models():
            info = model_info(name)
            params = info.num_params(num_classes=NUM_CLASSES)  # built without allocating a weight
            keras.backend.clear_session()
            first = (info.description.strip().splitlines() or [""])[0].strip()
            rows.append({"name": name, "family": info.family, "params": params, "description": first})
        _ROWS = sorted(rows, key=lambda r: r["name"])
    return _ROWS


def page_path(root, family):
    return os.path.join(root, PAGES, f"{family}.md")


def table(rows):
    lines = ["| name | parameters | description |", "|---|---:|---|"]
    for r in rows:
        description = r["description"].replace("|", "\\|")
        lines.append(f"| `{r['name']}` | {r['params']:,} | {description} |")
    return "\n".join(lines)


def json_text(rows):
    return json.dumps({"num_classes": NUM_CLASSES, "models": rows}, indent=2) + "\n"


_BLOCK = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), re.S)


def render_page(text, rows):
    """`text` with its presets block replaced by the table of `rows`; None when it has no markers."""
    if not _BLOCK.search(text):
        return None
    block = f"{START}\n{table(rows)}\n{END}"
    return _BLOCK.sub(lambda _: block, text, count=1)


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def expected_files(root, rows):
    """{path: expected text} for every family page and catalogue.json (None: a page without markers)."""
    expected = {}
    for family in sorted({r["family"] for r in rows}):
        path = page_path(root, family)
        text = _read(path)
        members = [r for r in rows if r["family"] == family]
        expected[path] = None if text is None else render_page(text, members)
    expected[os.path.join(root, JSON_PATH)] = json_text(rows)
    return expected


def check(root=None, rows=None):
    """The files (relative to `root`) whose tables or catalogue differ from the registry; [] when fresh."""
    root = default_root() if root is None else root
    rows = catalogue_rows() if rows is None else rows
    stale = []
    for path, want in expected_files(root, rows).items():
        if want is None or _read(path) != want:
            stale.append(os.path.relpath(path, root))
    return stale


def write(root=None, rows=None):
    """Rewrite every stale table and catalogue.json; returns the files written. A page without markers fails."""
    root = default_root() if root is None else root
    rows = catalogue_rows() if rows is None else rows
    written = []
    for path, want in expected_files(root, rows).items():
        if want is None:
            raise SystemExit(f"{os.path.relpath(path, root)}: missing, or without {START} ... {END} markers")
        if _read(path) != want:
            with open(path, "w", encoding="utf-8") as f:
                f.write(want)
            written.append(os.path.relpath(path, root))
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lacnn_zoo.models.catalogue", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 naming the stale files; write nothing")
    parser.add_argument("--root", default=None, help="the checkout (default: the one holding this module)")
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.root)
        if stale:
            print(f"stale preset tables (run python -m lacnn_zoo.models.catalogue): {', '.join(stale)}")
            return 1
        return 0
    written = write(args.root)
    print(f"rewrote {', '.join(written)}" if written else "preset tables are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
