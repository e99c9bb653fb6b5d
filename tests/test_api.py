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


# -- file names spelled by their owners only ----------------------------------------------------------------------

OWNED_NAMES = {  # a file name of a run folder or a search project -> the module that owns (spells) it
    "run.json": "lacnn_zoo/training/run_folder.py", "metrics.json": "lacnn_zoo/training/run_folder.py",
    "history.csv": "lacnn_zoo/training/run_folder.py", "best.keras": "lacnn_zoo/training/run_folder.py",
    "oracle.json": "lacnn_zoo/training/search_project.py", "search.json": "lacnn_zoo/training/search_project.py",
    "executions.json": "lacnn_zoo/training/search_project.py",
    "mechanisms.json": "lacnn_zoo/training/search_project.py", "trial.json": "lacnn_zoo/training/search_project.py",
}


def spelled_names(root, folders=("lacnn_zoo", "tuning", "export")):
    """(file, name) for every string constant of the code (docstrings aside) that is exactly an owned name."""
    import ast

    found = []
    for folder in folders:
        for directory, _, files in os.walk(os.path.join(root, folder)):
            for file in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(directory, file)
                tree = ast.parse(open(path, encoding="utf-8").read())
                docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                              if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                              and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
                found += [(os.path.relpath(path, root).replace(os.sep, "/"), node.value) for node in ast.walk(tree)
                          if isinstance(node, ast.Constant) and node.value in OWNED_NAMES
                          and id(node) not in docstrings]
    return found


def test_run_and_search_file_names_are_spelled_by_their_owners_only(tmp_path):
    strays = [(file, name) for file, name in spelled_names(ROOT) if OWNED_NAMES[name] != file]
    assert not strays, strays
    assert {name for _, name in spelled_names(ROOT)} == set(OWNED_NAMES)  # each owner does spell its names
    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "x.py").write_text('"""oracle.json"""\nPATH = "executions.json"\n')
    assert spelled_names(str(tmp_path), ("tuning",)) == [("tuning/x.py", "executions.json")]


# -- import levels ------------------------------------------------------------------------------------------------

MAX_IMPORT_LEVELS = 7


def import_levels(graph):
    """The longest of the shortest import chains between two modules, in modules (a -> b -> c is 3 levels), with
    imports inside functions counted (grimp reads every import statement), and one such chain."""
    import collections

    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    longest = []
    for start in sorted(edges):
        previous, queue = {start: None}, collections.deque([start])
        while queue:  # breadth first: each module is reached by a shortest chain
            module = queue.popleft()
            for imported in edges[module]:
                if imported not in previous:
                    previous[imported] = module
                    queue.append(imported)
        chain = [module]
        while previous[chain[-1]] is not None:
            chain.append(previous[chain[-1]])
        longest = max(longest, chain[::-1], key=len)
    return len(longest), longest


def test_no_import_chain_is_longer_than_seven_levels():
    import grimp

    levels, chain = import_levels(grimp.build_graph("lacnn_zoo", "tuning", "export"))
    assert levels <= MAX_IMPORT_LEVELS, " -> ".join(chain)


def test_import_levels_count_a_planted_chain():
    class Graph:  # a -> b -> c -> d, and a -> d directly: the shortest chain from a to d is 2 levels
        imports = {"a": {"b", "d"}, "b": {"c"}, "c": {"d"}, "d": set()}
        modules = set(imports)

        def find_modules_directly_imported_by(self, module):
            return self.imports[module]

    assert import_levels(Graph()) == (3, ["a", "b", "c"])
    Graph.imports["a"] = {"b"}
    assert import_levels(Graph()) == (4, ["a", "b", "c", "d"])


def unexplained_lazy_imports(root, folders=("lacnn_zoo", "tuning", "export")):
    """`file:line` of every import of lacnn_zoo, tuning or export inside a function that says nowhere why it is lazy:
    neither a `# lazy: <reason>` comment on its lines nor a `# Lazy imports: <reason>` line in its module."""
    import ast

    packages = ("lacnn_zoo", "tuning", "export")

    def ours(node):
        if isinstance(node, ast.Import):
            return any(a.name.split(".")[0] in packages for a in node.names)
        return node.level > 0 or (node.module or "").split(".")[0] in packages

    def lazy(node, in_function=False):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)) and ours(child):
                yield child
            yield from lazy(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    found = []
    for folder in folders:
        for directory, _, files in os.walk(os.path.join(root, folder)):
            for file in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(directory, file)
                source = open(path, encoding="utf-8").read()
                lines = source.splitlines()
                if any(line.startswith("# Lazy imports:") for line in lines):
                    continue
                found += [f"{os.path.relpath(path, root).replace(os.sep, '/')}:{node.lineno}"
                          for node in lazy(ast.parse(source))
                          if not any("# lazy:" in line for line in lines[node.lineno - 1:node.end_lineno])]
    return found


def test_every_import_inside_a_function_says_why_it_is_lazy():
    assert unexplained_lazy_imports(ROOT) == []


def test_the_lazy_import_check_names_an_unexplained_import(tmp_path):
    (tmp_path / "tuning").mkdir()
    planted = ("import os\nfrom lacnn_zoo import errors\n\n\nclass A:\n    def f(self):\n        import json\n"
               "        from . import options  # lazy: the reason\n        from lacnn_zoo.training import train\n")
    (tmp_path / "tuning" / "x.py").write_text(planted)
    assert unexplained_lazy_imports(str(tmp_path), ("tuning",)) == ["tuning/x.py:9"]
    (tmp_path / "tuning" / "x.py").write_text(planted + "\n# Lazy imports: one reason covers the module.\n")
    assert unexplained_lazy_imports(str(tmp_path), ("tuning",)) == []


# -- docstrings of the public API ---------------------------------------------------------------------------------


def undocumented(modules=None):
    """`{qualified name: ["Args", "Returns"]}`: the public functions and classes (the `__all__` of the public modules,
    defined in the zoo) whose docstring lacks an `Args:` section though they take arguments, or a `Returns:`
    section though they return a value (Google style, as Keras documents its layers)."""
    import ast
    import inspect
    import textwrap

    from lacnn_zoo import _api

    missing = {}
    for module_name in modules or _api.PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or \
                    not getattr(obj, "__module__", "").startswith(("lacnn_zoo", "tuning", "export")):
                continue
            doc = inspect.getdoc(obj) or ""
            try:
                params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
            except (TypeError, ValueError):
                params = []
            need = ["Args"] if params and "Args:" not in doc else []
            if inspect.isfunction(obj):
                function = ast.parse(textwrap.dedent(inspect.getsource(obj))).body[0]
                returns = any(isinstance(n, ast.Return) and n.value is not None
                              and not (isinstance(n.value, ast.Constant) and n.value.value is None)
                              for n in ast.walk(function))
                yields = any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in ast.walk(function))
                if returns and not yields and "Returns:" not in doc:
                    need.append("Returns")
            if need:
                missing[f"{obj.__module__}.{obj.__qualname__}"] = need
    return missing


def test_every_public_function_documents_its_arguments_and_result():
    assert undocumented() == {}


def test_the_docstring_check_sees_a_missing_section(monkeypatch):
    def documented(x):
        """Twice `x`.

        Args:
            x: a number.

        Returns:
            `2 * x`.
        """
        return 2 * x

    def bare(x):
        """Twice `x`."""
        return 2 * x

    module = type(sys)("lacnn_zoo_planted")
    module.__all__ = ["documented", "bare"]
    module.documented, module.bare = documented, bare
    documented.__module__ = bare.__module__ = "lacnn_zoo_planted"
    monkeypatch.setitem(sys.modules, "lacnn_zoo_planted", module)
    assert undocumented(["lacnn_zoo_planted"]) == {f"lacnn_zoo_planted.{bare.__qualname__}": ["Args", "Returns"]}



def test_the_site_check_names_a_public_name_the_api_reference_leaves_out(tmp_path):
    from lacnn_zoo import _api

    names = [(m, n) for m in _api.PUBLIC_MODULES for n in importlib.import_module(m).__all__ if n != "__version__"]
    # every name under its public module's path, but build_model only under the module that defines it
    ids = [f"{m}.{n}" for m, n in names if n != "build_model"]
    exported = sorted(f"{m}.{n}" for m, n in names if n == "build_model")
    assert "lacnn_zoo.build_model" in exported
    (tmp_path / "api" / "zoo").mkdir(parents=True)
    page = tmp_path / "api" / "zoo" / "index.html"
    page.write_text("".join(f'<h2 id="{i}"></h2>' for i in ids + ["lacnn_zoo.models.registry.build_model"]))
    assert _api.undocumented_on_site(str(tmp_path)) == []
    page.write_text("".join(f'<h2 id="{i}"></h2>' for i in ids + ["lacnn_zoo.models.registry.list_models"]))
    assert _api.undocumented_on_site(str(tmp_path)) == exported

PRIVATE_NAMES = re.compile(r"keras\.src\b|keras_tuner\.src\b|tensorflow\.python\b|\._flatten_layers\b|"
                           r"\._keras_history\b|\._inbound_nodes\b|\._symbolic_build\b|\._maybe_symbolic_build\b|"
                           r"\breduce_per_replica\b|\._save_model\b|\._load_model\b|\._weights_path\b|"
                           r"\._training_metadata_path\b|\._current_epoch\b|\._last_batch_seen\b|\._try_build\b|"
                           r"\._build_and_fit_model\b|convert_to_metrics_dict")


def private_uses(root, folders=("lacnn_zoo", "tuning", "export")):
    found = []
    for folder in folders:
        for directory, _, files in os.walk(os.path.join(root, folder)):
            for file in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(directory, file)
                for number, line in enumerate(open(path, encoding="utf-8"), start=1):
                    if PRIVATE_NAMES.search(line.split("#")[0]):
                        found.append(f"{os.path.relpath(path, root).replace(os.sep, '/')}:{number}")
    return found


def test_private_names_of_keras_tuner_and_tensorflow_are_used_in_compat_only(tmp_path):
    assert [f for f in private_uses(ROOT) if not f.startswith("lacnn_zoo/compat.py:")] == []
    assert len(private_uses(ROOT)) >= 10  # compat itself uses them
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "x.py").write_text("layers = model._flatten_layers()  # comment\n# model._keras_history\n")
    assert private_uses(str(tmp_path), ("export",)) == ["export/x.py:1"]
