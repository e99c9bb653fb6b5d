"""Every `lacnn-zoo ...` and `python -m tuning ...` command shown in the README parses with today's options."""

import os
import re
import shlex

import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def readme_commands(prefixes):
    text = open(README).read()
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


def parsed(main, patch_target, monkeypatch, argv):
    seen = []
    monkeypatch.setattr(patch_target, "run_command", lambda prog, fn, args, *a, **k: seen.append(args) or 0)
    try:
        assert main(argv) == 0
    except SystemExit as e:  # argparse's exit on an unknown or malformed option
        pytest.fail(f"README command {argv} does not parse (exit {e.code})")
    return seen


def test_readme_lacnn_zoo_commands_parse(monkeypatch):
    from lacnn_zoo import cli

    commands = readme_commands([["lacnn-zoo"]])
    assert len(commands) >= 10 and ["train"] in commands
    for argv in commands:
        assert parsed(cli.main, cli, monkeypatch, argv), argv


def test_readme_tuning_commands_parse(monkeypatch):
    from lacnn_zoo import errors
    from tuning.__main__ import main

    commands = readme_commands([["python", "-m", "tuning"], ["lacnn-zoo-tune"]])
    assert len(commands) >= 4
    for argv in commands:
        assert parsed(main, errors, monkeypatch, argv), argv


def test_each_deploy_snippet_reads_a_file_that_the_readmes_export_commands_write(monkeypatch):
    """A snippet runs after the commands before it, as written: its artifact is one an export command writes."""
    from export import __main__ as export_main
    from lacnn_zoo import errors

    writes = set()
    for argv in readme_commands([["python", "-m", "export"], ["lacnn-zoo-export"]]):
        args = parsed(export_main.main, errors, monkeypatch, argv)[0]
        files = {"onnx": ["model.onnx"], "both": ["model.onnx"], "all": ["model.onnx", "model.tflite"],
                 "litert": ["model.tflite"], "saved_model": []}[args.format]
        if args.quantize:
            files += [f.replace("model.", "model_int8.") for f in files]
        writes |= {f"{os.path.normpath(args.out)}/{f}" for f in files}
    text = open(README).read()
    snippets = re.findall(r"<!-- (deploy-snippet[\w-]*) -->\s*```python\n(.*?)```", text, re.S)
    assert len(snippets) == 2
    for marker, code in snippets:
        path = re.search(r'path = "([^"]+)"', code).group(1)
        assert path in writes, (marker, path, sorted(writes))
        offered = re.search(r"# or (\S+model_int8\.\w+)", code)
        assert offered and offered.group(1) in writes, (marker, offered and offered.group(1))  # written too
