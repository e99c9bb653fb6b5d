"""The documentation is correct: the preset tables match the registry, every relative link resolves, and only a
handful of Python snippets is not run (tests/test_docs_walk.py runs the rest, with the pages' commands, in order)."""

import glob
import os
import re
import shutil

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
NOT_RUN = "# not run:"
MAX_NOT_RUN = 3


def rel(path):
    return os.path.relpath(path, ROOT)


# -- preset tables ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rows():
    """Every preset built once (10 classes, default input), shared by the catalogue tests."""
    from lacnn_zoo.models import catalogue

    return catalogue.catalogue_rows()


def test_preset_tables_and_catalogue_json_match_the_registry(rows):
    import json

    from lacnn_zoo import list_families, list_models
    from lacnn_zoo.models import catalogue

    assert catalogue.check(ROOT, rows) == [], "run: python -m lacnn_zoo.models.catalogue"
    assert [r["name"] for r in rows] == list_models()
    for family in list_families():
        assert os.path.exists(catalogue.page_path(ROOT, family)), family
    data = json.load(open(os.path.join(ROOT, catalogue.JSON_PATH)))
    assert data["num_classes"] == 10 and data["models"] == rows
    assert all(isinstance(r["params"], int) and r["params"] > 0 and "\n" not in r["description"] for r in rows)


def copy_of_the_catalogue(tmp_path):
    from lacnn_zoo.models import catalogue

    shutil.copytree(os.path.join(ROOT, catalogue.PAGES), tmp_path / catalogue.PAGES)
    (tmp_path / catalogue.JSON_PATH).parent.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, catalogue.JSON_PATH), tmp_path / catalogue.JSON_PATH)
    return tmp_path


def test_a_stale_table_is_named_and_rewritten(rows, tmp_path, capsys):
    from lacnn_zoo.models import catalogue

    root = copy_of_the_catalogue(tmp_path)
    assert catalogue.check(str(root), rows) == []
    page = root / "docs" / "models" / "resnet.md"
    resnet20 = next(r for r in rows if r["name"] == "resnet20")
    text = page.read_text()
    planted = text.replace(f"| `resnet20` | {resnet20['params']:,} |", f"| `resnet20` | {resnet20['params'] + 1:,} |")
    assert planted != text
    page.write_text(planted)
    assert catalogue.check(str(root), rows) == [os.path.join("docs", "models", "resnet.md")]
    assert catalogue.main(["--check", "--root", str(root)]) == 1
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and os.path.join("docs", "models", "resnet.md") in line

    json_file = root / catalogue.JSON_PATH
    json_file.write_text(json_file.read_text().replace('"resnet20"', '"resnet21"'))
    (root / "docs" / "models" / "plain.md").write_text("# plain\n\nno markers\n")
    assert catalogue.check(str(root), rows) == [
        os.path.join("docs", "models", "plain.md"), os.path.join("docs", "models", "resnet.md"), catalogue.JSON_PATH]

    (root / "docs" / "models" / "plain.md").write_text(
        f"# plain\n\n{catalogue.START}\nold\n{catalogue.END}\n\ntext after\n")
    stale = catalogue.check(str(root), rows)
    assert len(stale) == 3 and sorted(catalogue.write(str(root), rows)) == sorted(stale)
    assert catalogue.check(str(root), rows) == [] and page.read_text() == text
    assert catalogue.main(["--check", "--root", str(root)]) == 0
    assert (root / "docs" / "models" / "plain.md").read_text().endswith(f"{catalogue.END}\n\ntext after\n")


# -- links -----------------------------------------------------------------------------------------------------


def without_code(text):
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path):
    """GitHub's heading anchors of a markdown page."""
    text = re.sub(r"```.*?```", "", open(path, encoding="utf-8").read(), flags=re.S)
    slugs = set()
    for heading in re.findall(r"^#+\s+(.*)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def quoted_parameter_counts(text):
    """`[(model, count)]` of every markdown table row whose first cell is a registered model name, read from the
    table's `params` column."""
    from lacnn_zoo import list_models

    names, found, header = set(list_models()), [], None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            header = None
        elif header is None:
            header = cells
        elif "params" in header and cells[0] in names:
            count = re.match(r"[\d,]+", cells[header.index("params")])
            found.append((cells[0], int(count.group().replace(",", ""))))
    return found


def test_the_parameter_counts_the_results_quote_are_the_models():
    """docs/results.md's comparison quoted 120,858 parameters for a model of 124,122 (its head had changed)."""
    from lacnn_zoo import model_info

    quoted = quoted_parameter_counts(open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8").read())
    assert len(quoted) >= 9
    for name, count in quoted:  # the comparison ran on the embedded digits: 8x8x1, 10 classes
        assert model_info(name).num_params(input_shape=(8, 8, 1), num_classes=10) == count, name
    planted = "| model | params |\n|---|---:|\n| resnet8 | 78,427 |\n"
    assert quoted_parameter_counts(planted) == [("resnet8", 78427)]


def test_every_relative_link_points_at_an_existing_file():
    checked = 0
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", without_code(open(page, encoding="utf-8").read())):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), file)) if file else page
            assert os.path.exists(resolved), f"{rel(page)}: link {target!r} points at no file"
            if anchor and resolved.endswith(".md"):
                assert anchor in anchors(resolved), f"{rel(page)}: link {target!r}: no such heading"
            checked += 1
    assert checked >= 30


def test_readme_is_a_front_page_that_maps_every_docs_page():
    text = open(PAGES[0], encoding="utf-8").read()
    assert len(text.splitlines()) <= 300
    api_index = open(os.path.join(ROOT, "docs", "api", "index.md"), encoding="utf-8").read()
    for page in PAGES[1:]:
        if os.path.dirname(rel(page)) == os.path.join("docs", "api") and not page.endswith("index.md"):
            # the API reference's pages are listed by its index
            assert f"]({os.path.basename(page)})" in api_index, f"docs/api/index.md does not list {rel(page)}"
        else:
            assert f"]({rel(page)})" in text, f"README.md does not list {rel(page)}"


# -- python snippets -------------------------------------------------------------------------------------------


def python_blocks(page):
    return re.findall(r"^ *```python\n(.*?)^ *```", open(page, encoding="utf-8").read(), flags=re.S | re.M)


def test_only_a_handful_of_snippets_are_not_run():
    blocks = [b for page in PAGES for b in python_blocks(page)]
    skipped = [b for b in blocks if b.startswith(NOT_RUN)]
    assert len(blocks) >= 8
    assert len(skipped) <= MAX_NOT_RUN, [b.splitlines()[0] for b in skipped]
    assert all(re.match(rf"{NOT_RUN} \S", b) for b in skipped)  # a reason is given
