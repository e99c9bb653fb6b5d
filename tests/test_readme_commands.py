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
