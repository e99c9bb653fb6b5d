"""The public API is a contract: every import path an earlier README or docs page documented still works (moved
ones with a DeprecationWarning naming the new path and the version that removes them), the previous version's
documented snippets run, the version lives in one place, and `__all__` names what the modules have."""

import importlib
import os
import re
import subprocess
import sys
import warnings

import pytest

import lacnn_zoo
from lacnn_zoo import _deprecation

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir))

# Every dotted path of the zoo that README.md and docs/ have documented, in any commit (found with
# `git log -p -- README.md docs | grep -o "lacnn_zoo\.[a-z_.A-Z]*"` and the imports of their code blocks),
# except the LiteRT metadata keys `lacnn_zoo.class_names` and `lacnn_zoo.preprocessing`, which are not imports.
DOCUMENTED = [
    "export.bench", "export.export_model", "export.validate", "tuning.gpu_check", "tuning.run_search",
    "lacnn_zoo.build_model", "lacnn_zoo.data", "lacnn_zoo.data.load_digits", "lacnn_zoo.input_convention",
    "lacnn_zoo.layer_attended", "lacnn_zoo.load_model", "lacnn_zoo.list_models", "lacnn_zoo.model_info",
    "lacnn_zoo.register_model", "lacnn_zoo.report", "lacnn_zoo.tap_names", "lacnn_zoo.models.catalogue",
    "lacnn_zoo.models.resnet.build_resnet", "lacnn_zoo.training.train", "lacnn_zoo.training.resume",
    "lacnn_zoo.training.diagnostics", "lacnn_zoo.training.inference.evaluate",
    "lacnn_zoo.training.inference.predict", "lacnn_zoo.training.monitor.layer_weights",
    "lacnn_zoo.training.distribute.fitting", "lacnn_zoo.experiments.bench_aa", "lacnn_zoo.experiments.ema_check",
    "lacnn_zoo.experiments.study.depth_study", "lacnn_zoo.experiments.study.lesion_accuracies",
    # moved in 0.2.0, deprecated aliases until 0.3.0
    "lacnn_zoo.monitor.layer_weights", "lacnn_zoo.study.depth_study", "lacnn_zoo.study.lesion_accuracies",
    "lacnn_zoo.distribute.fitting", "lacnn_zoo.bench_aa",
]


def resolve(path):
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(path)


@pytest.mark.parametrize("path", DOCUMENTED)
def test_every_documented_path_resolves(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert resolve(path) is not None


@pytest.mark.parametrize("old,new", sorted(_deprecation.MOVED_MODULES.items()))
def test_a_moved_module_forwards_every_public_name_with_a_warning(old, new):
    module, target = importlib.import_module(old), importlib.import_module(new)
    names = getattr(target, "__all__", None) or [n for n in vars(target) if not n.startswith("_")]
    assert names and sorted(dir(module)) == sorted(names)
    for name in names:
        with pytest.warns(DeprecationWarning) as caught:
            assert getattr(module, name) is getattr(target, name)
        message = str(caught[0].message)
        assert f"{old}.{name} is deprecated since lacnn-zoo {_deprecation.DEPRECATED_IN}" in message
        assert f"removed in {_deprecation.REMOVED_IN}" in message
        assert message.endswith(f"use {_deprecation.new_path(old, name)}")
        assert caught[0].filename == __file__  # points at the user's line, not at the alias
    with pytest.raises(AttributeError, match=f"{re.escape(old)}.*no attribute 'nothing'"):
        module.nothing  # noqa: B018


def test_the_old_monitor_import_points_at_the_top_level():
    with pytest.warns(DeprecationWarning, match=r"use lacnn_zoo\.layer_weights$"):
        from lacnn_zoo.monitor import layer_weights
    assert layer_weights is lacnn_zoo.layer_weights is resolve("lacnn_zoo.training.monitor.layer_weights")


def test_deprecations_are_removed_on_time():
    """The release that removes them must remove them: an alias outliving its announced version fails here."""
    version = tuple(int(p) for p in lacnn_zoo.__version__.split(".")[:2])
    removed_in = tuple(int(p) for p in _deprecation.REMOVED_IN.split(".")[:2])
    assert version < removed_in, f"remove the aliases of lacnn_zoo/_deprecation.py ({_deprecation.REMOVED_IN})"
    changelog = open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8").read()
    for old in _deprecation.MOVED_MODULES:
        assert f"`{old}`" in changelog or f"python -m {old}`" in changelog, old


def test_the_previous_versions_documented_snippets_run(tmp_path):
    """README.md's Python blocks of 0.1.0 (tests/data/readme_0.1.0.md), in a fresh process, in order."""
    text = open(os.path.join(ROOT, "tests", "data", "readme_0.1.0.md"), encoding="utf-8").read()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) == 4 and "from lacnn_zoo.monitor import layer_weights" in blocks[2]
    script = tmp_path / "snippets.py"
    script.write_text("\n".join(blocks))
    # The one file block 1 reads, as `lacnn-zoo train --model lacnn_static_vector_tiny` wrote it in 0.1.0.
    run = tmp_path / "runs" / "lacnn_static_vector_tiny-digits-seed0"
    run.mkdir(parents=True)
    prepare = ("import lacnn_zoo, sys; m = lacnn_zoo.build_model('lacnn_static_vector_tiny'); "
               "m.compile(loss='sparse_categorical_crossentropy'); m.save(sys.argv[1])")
    env = dict(os.environ, MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", prepare, str(run / "best.keras")], check=True, env=env, timeout=300)
    done = subprocess.run([sys.executable, "-W", "always::DeprecationWarning:__main__", str(script)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(4, 17)" in done.stdout  # block 4's layer_weights on a ResNet50V2 with 17 taps
    deprecations = re.findall(r"DeprecationWarning: (.*)", done.stderr)
    assert deprecations == [f"lacnn_zoo.monitor.layer_weights is deprecated since lacnn-zoo "
                            f"{_deprecation.DEPRECATED_IN} and will be removed in {_deprecation.REMOVED_IN}: "
                            f"use lacnn_zoo.layer_weights"] * 2, done.stderr[-3000:]


def test_python_m_of_a_moved_module_runs_the_new_one_with_a_warning():
    done = subprocess.run([sys.executable, "-m", "lacnn_zoo.bench_aa", "--help"], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m lacnn_zoo.experiments.bench_aa")
    assert ("python -m lacnn_zoo.bench_aa is deprecated since lacnn-zoo 0.2.0 and will be removed in 0.3.0: "
            "use python -m lacnn_zoo.experiments.bench_aa") in done.stderr


def test_the_version_lives_in_one_place():
    from importlib.metadata import version

    assert re.fullmatch(r"\d+\.\d+\.\d+", lacnn_zoo.__version__)
    assert version("lacnn-zoo") == lacnn_zoo.__version__  # setup.cfg reads lacnn_zoo.__version__
    assert f"## [{lacnn_zoo.__version__}]" in open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8").read()
    console_script = os.path.join(os.path.dirname(sys.executable), "lacnn-zoo")  # the installed entry point
    for command in ([console_script], [sys.executable, "-m", "tuning"], [sys.executable, "-m", "export"]):
        done = subprocess.run(command + ["--version"], capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, f"lacnn-zoo {lacnn_zoo.__version__}\n"), command


# -- the public surface, written down --------------------------------------------------------------------------


def test_the_checked_in_listing_is_the_code_s_public_api():
    """docs/api/public-api.txt is what `python -m lacnn_zoo._api` writes today: a removed name or a changed
    signature fails here until the listing (and CHANGELOG.md) say so."""
    from lacnn_zoo import _api

    checked_in = open(os.path.join(ROOT, "docs", "api", "public-api.txt"), encoding="utf-8").read()
    assert _api.listing() == checked_in, (
        "the public API changed: run `python -m lacnn_zoo._api docs/api/public-api.txt`, review `git diff`, "
        "and say the change in CHANGELOG.md")


def test_a_changed_signature_changes_the_listing(monkeypatch):
    from lacnn_zoo import _api

    before = _api.listing()
    monkeypatch.setattr(lacnn_zoo, "layer_weights", lambda model, x, batch_size=32: None)
    after = _api.listing()
    assert before != after and "def <lambda>" not in after
    assert "def layer_weights(model, x, batch_size=32)" in after.split("\n[lacnn_zoo.layers]")[0]


def test_every_public_module_declares_all_and_has_its_names():
    from lacnn_zoo import _api

    for name in _api.PUBLIC_MODULES:
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "__all__", None), list), f"{name} declares no __all__"
        assert len(set(module.__all__)) == len(module.__all__), name
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def zoo_imports(folder):
    """(file, module, name) of every `from lacnn_zoo... import name` in a folder's Python files, in functions too."""
    import ast

    found = []
    for directory, _, files in os.walk(os.path.join(ROOT, folder)):
        for file in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(directory, file)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lacnn_zoo":
                    found += [(os.path.relpath(path, ROOT), node.module, a.name) for a in node.names]
                elif isinstance(node, ast.Import):
                    found += [(os.path.relpath(path, ROOT), a.name, None) for a in node.names
                              if a.name.split(".")[0] == "lacnn_zoo"]
    return found


def non_public_imports(folder):
    """The imports of the zoo in `folder` that name no public module and no name of a public module's __all__."""
    from lacnn_zoo import _api

    wrong = []
    for file, module, name in zoo_imports(folder):
        if name is None or f"{module}.{name}" in _api.PUBLIC_MODULES:  # a public module itself
            ok = (module if name is None else f"{module}.{name}") in _api.PUBLIC_MODULES
        else:
            ok = module in _api.PUBLIC_MODULES and name in importlib.import_module(module).__all__
        if not ok:
            wrong.append(f"{file}: {module} {name}")
    return wrong


@pytest.mark.parametrize("folder", ["export", "tuning"])
def test_export_and_tuning_import_only_public_names(folder):
    assert len(zoo_imports(folder)) >= 10
    assert non_public_imports(folder) == []


def test_the_public_names_check_catches_deep_and_unlisted_imports(tmp_path, monkeypatch):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "x.py").write_text(
        "import lacnn_zoo.training.loop\n"
        "from lacnn_zoo.training import diagnostics, RunFolder, run_folder\n"
        "def f():\n    from lacnn_zoo.training.callbacks import EpochTimer\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    file = os.path.join("export", "x.py")
    assert non_public_imports("export") == [f"{file}: lacnn_zoo.training.loop None",
                                            f"{file}: lacnn_zoo.training run_folder",
                                            f"{file}: lacnn_zoo.training.callbacks EpochTimer"]
