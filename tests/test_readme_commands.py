"""Every `lacnn-zoo ...`, `python -m tuning ...` and `python -m export ...` command shown in the README and in
docs/ parses with today's options."""

import glob
import os
import re
import shlex

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir))
README = os.path.join(ROOT, "README.md")


def pages():
    """README.md and every docs/**/*.md page, README first."""
    return [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))


def page_commands(path, prefixes):
    text = open(path, encoding="utf-8").read()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # environment assignments
                words.pop(0)
            for prefix in prefixes:
                if words[:len(prefix)] == prefix:
                    commands.append(words[len(prefix):])
    return commands


def readme_commands(prefixes):
    """The commands of README.md and of every docs page."""
    return [argv for path in pages() for argv in page_commands(path, prefixes)]


def parsed(main, patch_target, monkeypatch, argv):
    seen = []
    monkeypatch.setattr(patch_target, "run_command", lambda prog, fn, args, *a, **k: seen.append(args) or 0)
    try:
        assert main(argv) == 0
    except SystemExit as e:  # argparse's exit on an unknown or malformed option
        pytest.fail(f"documented command {argv} does not parse (exit {e.code})")
    return seen


def test_docs_pages_exist():
    names = {os.path.relpath(p, ROOT) for p in pages()}
    for page in ("training", "layer-attention", "attention-augmented", "search", "deployment", "distributed",
                 "results", "development", "models/index"):
        assert os.path.join("docs", f"{page}.md") in names


def test_readme_lacnn_zoo_commands_parse(monkeypatch):
    from lacnn_zoo import cli

    commands = readme_commands([["lacnn-zoo"]])
    assert len(commands) >= 25 and ["train", "--output-dir", "runs/main"] in commands  # the main job
    assert len(page_commands(README, [["lacnn-zoo"]])) >= 4  # the front page's tour
    for sub in ("train", "evaluate", "predict", "list", "info", "bench", "compare", "study"):
        assert any(argv[:1] == [sub] for argv in commands), sub
    for argv in commands:
        assert parsed(cli.main, cli, monkeypatch, argv), argv


def test_readme_tuning_commands_parse(monkeypatch):
    from lacnn_zoo import errors
    from tuning.__main__ import main

    commands = readme_commands([["python", "-m", "tuning"], ["lacnn-zoo-tune"]])
    assert len(commands) >= 8
    assert len(page_commands(README, [["python", "-m", "tuning"]])) >= 1
    for argv in commands:
        assert parsed(main, errors, monkeypatch, argv), argv


def test_readme_export_commands_parse(monkeypatch):
    from export import __main__ as export_main
    from lacnn_zoo import errors

    commands = readme_commands([["python", "-m", "export"], ["lacnn-zoo-export"]])
    assert len(commands) >= 3
    assert len(page_commands(README, [["python", "-m", "export"]])) >= 1
    for argv in commands:
        assert parsed(export_main.main, errors, monkeypatch, argv), argv


def test_each_deploy_snippet_reads_a_file_that_the_pages_export_commands_write(monkeypatch):
    """A snippet runs after the commands before it on its page, as written: its artifact is one they write."""
    from export import __main__ as export_main
    from lacnn_zoo import errors

    found = 0
    for page in pages():
        text = open(page, encoding="utf-8").read()
        snippets = re.findall(r"<!-- (deploy-snippet[\w-]*) -->\s*```python\n(.*?)```", text, re.S)
        if not snippets:
            continue
        writes = set()
        for argv in page_commands(page, [["python", "-m", "export"], ["lacnn-zoo-export"]]):
            args = parsed(export_main.main, errors, monkeypatch, argv)[0]
            files = {"onnx": ["model.onnx"], "both": ["model.onnx"], "all": ["model.onnx", "model.tflite"],
                     "litert": ["model.tflite"], "saved_model": []}[args.format]
            if args.quantize:
                files += [f.replace("model.", "model_int8.") for f in files]
            writes |= {f"{os.path.normpath(args.out)}/{f}" for f in files}
        for marker, code in snippets:
            found += 1
            path = re.search(r'path = "([^"]+)"', code).group(1)
            assert path in writes, (page, marker, path, sorted(writes))
            offered = re.search(r"# or (\S+model_int8\.\w+)", code)
            assert offered and offered.group(1) in writes, (marker, offered and offered.group(1))  # written too
    assert found == 2
