"""The docs run in order, as written (issue 31): README.md, then every page in the order the README's table lists
them, all in ONE fresh folder, as a newcomer following them in one clone would. Every ```bash and ```python block
runs in page order; a command that exits non-zero fails the test unless its comment on the page marks it as an
expected refusal (`# refused: ...`).

What the walk changes, and nothing else (docs/development.md, "The docs walk"):
- epochs and trials are shrunk: `--epochs N` becomes `--epochs 1` (Hyperband: 3, the least that gives every
  mechanism a trial) and a training, search, study or comparison without `--epochs` gets it; `--trials` becomes
  the number of mechanisms searched; `lacnn-zoo study`, `compare` and `ema_check` run seed 0 only (a warm-up
  of W epochs gets W + 1);
- TFDS sets run on `tfds.testing.mock_data` (no data set can be downloaded here);
- the commands run in one process (`lacnn-zoo ...` through `lacnn_zoo.cli.main`, `python -m M` through runpy,
  `python -c` and `python - <<'PY'` through exec): the same code, without importing TensorFlow sixty times. That
  process is the walk's own (the test starts pytest again on itself), so what the walk leaves alive slows no
  other test.

What it does not run, each said in the summary it prints:
- the set-up (`python3.11 -m venv`, `pip`, `python -m pytest`, `bash .ci/run`, `ruff`, `mkdocs`): the test runs in it;
- a line whose comment says what it needs that no test machine has (`# needs two machines`, `# needs the network`);
- a line on another Keras backend that is not installed here (`KERAS_BACKEND=jax`);
- what takes a minute or more even shrunk (searches beyond the README's tour, studies, benchmarks: LONG, each
  with the tests that run its code), unless LACNN_ZOO_DOCS_WALK=full;
- what rewrites or reads the checkout's own files (CHECKOUT: the walk runs in a temporary folder).
"""

import glob
import os
import re
import runpy
import shlex
import subprocess
import sys
import time

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir))
README = os.path.join(ROOT, "README.md")
FULL = os.environ.get("LACNN_ZOO_DOCS_WALK") == "full"

# The set-up commands: the test runs inside the environment they make.
SETUP = (["python3.11", "-m", "venv"], ["python3", "-m", "venv"], ["pip"], ["python", "-m", "pip"],
         ["python3", "-m", "pip"], [".", ".venv/bin/activate"], ["python", "-m", "pytest"], ["bash", ".ci/run"],
         ["ruff"], ["lint-imports"], ["mkdocs"])
# Not run unless LACNN_ZOO_DOCS_WALK=full: what takes a minute or more even shrunk, whose code its own tests run
# (or an earlier line of the walk ran), by (page, the command as written without its comment).
SEARCH = "9 trials of 1 epoch, 1 to 4 minutes; the README's tour ran the search (tests/test_tuning.py: each tuner)"
LONG = {
    ("README.md", "python -m tuning --dataset cifar10 --data-dir ~/tensorflow_datasets --tuner bayesian --trials 30 "
                  "--project-name cifar10"): SEARCH,
    ("docs/search.md", "python -m tuning"): SEARCH,
    ("docs/search.md", "python -m tuning --mechanisms plain,static_vector,self_attention --tuner hyperband --epochs 9 "
                       "--project-name hyperband"): SEARCH,
    ("docs/search.md", "python -m tuning --dataset cifar10 --data-dir ~/tensorflow_datasets --tuner bayesian --trials "
                       "30 --project-name cifar10"): SEARCH,
    ("docs/search.md", "python -m tuning --mechanisms static_vector,self_attention --set backbone=MobileNetV3Small "
                       "--dataset ./photos --project-name photos-mobilenet"): SEARCH,
    ("docs/search.md", "python -m tuning --dataset ./photos --image-size 64 64 --augment crop-flip --trials 18 "
                       "--project-name photos"): SEARCH,
    ("docs/search.md", "KERAS_BACKEND=jax python -m tuning --trials 12 --project-name jax"): SEARCH,
    ("docs/results.md", "python -m tuning --directory runs/tuning"): SEARCH,
    ("docs/training.md", "lacnn-zoo train --model wrn28_10 --dataset cifar100 --recipe zagoruyko2016 --epochs 200 "
                         "--precision mixed_bfloat16"): "WRN-28-10, 36.5M parameters (tests/test_recipes.py)",
    ("docs/training.md", "lacnn-zoo train --model lacnn_static_vector_tiny --dataset digits5 --set "
                         "backbone=MobileNetV3Small --set \"taps=['blocks[-1]']\" --bn-momentum 0.9 --epochs 10 "
                         "--seed 0 --output-dir runs/digits5-bare"): "the training above with another tap",
    ("docs/results.md", "lacnn-zoo study depth"): "72 runs (tests/test_study.py runs the study's code)",
    ("docs/results.md", "lacnn-zoo study depth --quick"): "16 runs, 3 minutes shrunk (tests/test_study.py)",
    ("docs/results.md", "lacnn-zoo study depth --dataset cifar10 --data-dir ~/tensorflow_datasets --epochs 30 --out "
                        "runs/depth-cifar"): "24 models up to ResNet-56 (tests/test_study.py)",
    ("docs/results.md", "lacnn-zoo bench 'lacnn_*' plain_cnn --input-shape 32 32 3 --batch-size 128 --memory --csv "
                        "bench.csv"): "a timed benchmark (tests/test_bench.py runs its code)",
    ("docs/results.md", "lacnn-zoo compare"): "27 runs (the compare below runs the same code)",
    ("docs/results.md", "python -m lacnn_zoo.experiments.bench_aa"): "a minute of timing (tests/test_bench_aa.py)",
    ("docs/results.md", "python -m export.bench"): "minutes of timing in 6 processes (tests/test_export_bench.py)",
    ("docs/deployment.md", "python -m export.bench"): "minutes of timing in 6 processes (tests/test_export_bench.py)",
}
# Never run: what writes the checkout itself (the walk runs in a temporary folder and must leave the clone alone).
CHECKOUT = {
    "python -m lacnn_zoo.models.catalogue": "rewrites docs/models/ of the checkout",
    "python -m lacnn_zoo.models.catalogue --check": "reads the checkout's docs/models/ (.ci/run runs it)",
    "python -m lacnn_zoo._api docs/api/public-api.txt": "rewrites the checkout's listing (tests/test_api.py checks it)",
}
BACKENDS = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}


def pages_in_order():
    """README.md, then the pages its documentation table links, in its order, then any other page."""
    text = open(README, encoding="utf-8").read()
    linked = [os.path.join(ROOT, p) for p in re.findall(r"^\| \[[^]]+\]\((docs/[^)]+\.md)\)", text, flags=re.M)]
    rest = sorted(set(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)) - set(linked))
    return [README] + linked + rest


def blocks(page):
    """[(language, first line number, code)] of the page's bash and python blocks, in order."""
    text = open(page, encoding="utf-8").read()
    found = []
    for m in re.finditer(r"^ *```(bash|python)\n(.*?)^ *```", text, flags=re.S | re.M):
        found.append((m.group(1), text.count("\n", 0, m.start()) + 2, m.group(2)))
    return found


def split_comment(line):
    """(the command, its trailing shell comment or ''): the comment starts at a `#` outside quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return " ".join(line[:i].split()), line[i + 1:].strip()
    return " ".join(line.split()), ""


def shell_lines(code):
    """[(line, heredoc or None)] of a bash block: continuations joined, a `<<'PY'` heredoc attached to its line."""
    lines, out, i = code.replace("\\\n", " ").splitlines(), [], 0
    while i < len(lines):
        line, i = lines[i], i + 1
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            end = lines.index(heredoc.group(1), i)
            out.append((line, "\n".join(lines[i:end]) + "\n"))
            i = end + 1
        elif line.strip() and not line.strip().startswith("#"):
            out.append((line, None))
    return out


def expand(words, line):
    """~ and unquoted globs, as the shell would."""
    out = []
    for w in words:
        w = os.path.expanduser(w)
        quoted = f"'{w}'" in line or f'"{w}"' in line
        matches = sorted(glob.glob(w)) if any(c in w for c in "*?[") and not quoted else []
        out.extend(matches or [w])
    return out


def mechanisms_searched(argv):
    from tuning.options import CANDIDATES

    if "--mechanisms" in argv:
        return len(argv[argv.index("--mechanisms") + 1].split(","))
    return len(CANDIDATES)


def setting(argv, flag, value, *, only_if_present=False):
    """argv with `flag value` replacing the flag's values (up to the next option), or appended."""
    if flag in argv:
        i = argv.index(flag) + 1
        j = i
        while j < len(argv) and not argv[j].startswith("--"):
            j += 1
        return argv[:i] + [str(v) for v in value] + argv[j:]
    return argv if only_if_present else argv + [flag] + [str(v) for v in value]


def shrunk(program, argv):
    """The walk's one change to a command: fewer epochs, trials and seeds (module docstring)."""
    if program == "lacnn-zoo" and argv[:1] == ["tune"]:
        return ["tune"] + shrunk("tuning", argv[1:])
    if program == "tuning":
        hyperband = "hyperband" in argv
        argv = setting(argv, "--epochs", [3 if hyperband else 1])
        return argv if hyperband else setting(argv, "--trials", [mechanisms_searched(argv)])
    if program == "lacnn-zoo" and argv[:1] in (["train"], ["compare"], ["study"]):
        warmup = float(argv[argv.index("--warmup-epochs") + 1]) if "--warmup-epochs" in argv else 0
        argv = setting(argv, "--epochs", [int(warmup) + 1])  # a warm-up must end before the run does
        return setting(argv, "--seeds", [0]) if argv[0] in ("compare", "study") else argv
    if program == "lacnn_zoo.experiments.ema_check":
        return setting(setting(argv, "--epochs", [1]), "--seeds", [0])
    return argv


def exit_status(e):
    """The status a process ending with SystemExit `e` returns, as the interpreter maps it."""
    return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


class Walk:
    """Runs one page's commands in the current folder and records what it did."""

    def __init__(self, readouterr):
        self.ran, self.skipped, self.failures = [], [], []
        self.readouterr = readouterr  # capsys': what the last command printed, for the failure message

    def said(self):
        """The last lines the last command printed (its error first), for a failure message."""
        out, err = self.readouterr()
        lines = [line for line in (err + out).splitlines() if line.strip() and "] " not in line[:40]]
        return " | ".join(line.strip()[:200] for line in lines[-3:])

    def run_python(self, code, where, argv=("-c",), namespace=None):
        """Exec `code` as `python -c` (a fresh namespace) or as a page's block (the page's one namespace)."""
        namespace = {"__name__": "__main__"} if namespace is None else namespace
        saved = sys.argv
        sys.argv = list(argv)
        try:
            exec(compile(code, where, "exec"), namespace)
            return 0
        except SystemExit as e:
            return exit_status(e)
        finally:
            sys.argv = saved

    def run_argv(self, words, env, line, heredoc, where):
        """The exit code of one simple command, run as the shell would, in this process where it can be."""
        import keras

        if env.get("KERAS_BACKEND", keras.backend.backend()) != keras.backend.backend():
            return self.run_elsewhere(words, env)
        if words[:1] in (["python"], ["python3"]) and words[1:2] == ["-"]:
            return self.run_python(heredoc, where, ["-"])
        if words[:1] in (["python"], ["python3"]) and words[1:2] == ["-c"]:
            return self.run_python(words[2], where)
        keras.backend.clear_session()
        if words[0] == "lacnn-zoo":
            from lacnn_zoo import cli

            try:
                return cli.main(shrunk("lacnn-zoo", words[1:]))
            except SystemExit as e:
                return exit_status(e)
        if words[:2] in (["python", "-m"], ["python3", "-m"]):
            module = words[2]
            saved = sys.argv
            sys.argv = [module] + shrunk(module, words[3:])
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                return 0
            except SystemExit as e:
                return exit_status(e)
            finally:
                sys.argv = saved
        # anything else (ls, echo, mkdir): the real shell
        done = subprocess.run(["bash", "-c", shlex.join(words)], env={**os.environ, **env}, timeout=120)
        return done.returncode

    def run_elsewhere(self, words, env):
        """A command on another Keras backend: in its own process (a backend is chosen once per process)."""
        if words[0] == "lacnn-zoo":
            argv = [sys.executable, "-m", "lacnn_zoo"] + shrunk("lacnn-zoo", words[1:])
        elif words[:2] in (["python", "-m"], ["python3", "-m"]):
            argv = [sys.executable, "-m", words[2]] + shrunk(words[2], words[3:])
        else:
            argv = words
        done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done.returncode

    def line(self, page, number, line, heredoc):
        command, comment = split_comment(line)
        where = f"{os.path.relpath(page, ROOT)}:{number}: {line.strip()[:100]}"
        if comment.startswith("needs "):
            self.skipped.append((where, comment))
            return
        words = shlex.split(line, comments=True)
        if command in CHECKOUT:
            self.skipped.append((where, CHECKOUT[command]))
            return
        if (os.path.relpath(page, ROOT), command) in LONG and not FULL:
            self.skipped.append((where, LONG[os.path.relpath(page, ROOT), command]))
            return
        commands, current = [], []
        for w in words:
            if w == "&&":
                commands.append(current)
                current = []
            elif not w.startswith("<<"):
                current.append(w)
        commands.append(current)
        for words in commands:
            env = {}
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                key, _, value = words.pop(0).partition("=")
                env[key] = value
            if any(words[:len(s)] == s for s in SETUP):
                self.skipped.append((where, f"set-up: {shlex.join(words)[:40]}"))
                continue
            backend = env.get("KERAS_BACKEND")
            if backend and backend != os.environ.get("KERAS_BACKEND", "tensorflow"):
                import importlib.util

                if importlib.util.find_spec(BACKENDS[backend]) is None:
                    self.skipped.append((where, f"{backend} is not installed here"))
                    continue
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            start = time.perf_counter()
            try:
                code = self.run_argv(expand(words, line), env, line, heredoc, where)
            except Exception as e:  # a snippet's or a command's own exception: a failure of the page
                code = f"{type(e).__name__}: {e}"
            finally:
                for k, v in saved.items():
                    os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
            self.ran.append((where, round(time.perf_counter() - start, 1)))
            said = self.said()
            if os.environ.get("LACNN_ZOO_DOCS_WALK_TRACE"):
                print(f"[walk] exit {code} in {self.ran[-1][1]} s: {where}" + (f"\n    {said}" if code else ""),
                      file=sys.__stderr__, flush=True)
            refused = comment.startswith("refused")
            if (code != 0) != refused:
                self.failures.append(f"{where}: exit {code}" + (" (the page says it is refused)" if refused else "")
                                     + f"\n    it printed: {said}")

    def page(self, page):
        namespace = {"__name__": "__main__"}  # the page's python blocks share one, as cells of a notebook
        for language, number, code in blocks(page):
            if language == "python":
                if code.startswith("# not run:"):
                    self.skipped.append((f"{os.path.relpath(page, ROOT)}:{number}", code.splitlines()[0]))
                    continue
                where = f"{os.path.relpath(page, ROOT)}:{number}: python block"
                start = time.perf_counter()
                try:
                    self.run_python(code, where, namespace=namespace)
                except Exception as e:
                    self.failures.append(f"{where}: {type(e).__name__}: {e}")
                self.ran.append((where, round(time.perf_counter() - start, 1)))
                self.said()
                continue
            first = code.lstrip().splitlines()[0] if code.strip() else ""
            if first.startswith("# needs "):  # the whole block needs what the test machine has not
                self.skipped.append((f"{os.path.relpath(page, ROOT)}:{number}: bash block", first[2:]))
                continue
            for line, heredoc in shell_lines(code):
                self.line(page, number, line, heredoc)


CHILD = "LACNN_ZOO_DOCS_WALK_PROCESS"


@pytest.mark.long  # about 5.5 minutes
def test_every_page_runs_in_order_in_one_fresh_folder(tmp_path, monkeypatch, capsys, pytestconfig):
    if os.environ.get(CHILD) != "1":
        # The walk runs in a process of its own, as a newcomer's commands do: it leaves hundreds of thousands of
        # TensorFlow graph objects alive, which made every later test of the same pytest worker several times
        # slower (the garbage collector scans them again and again).
        env = {**os.environ, CHILD: "1"}
        this = f"{__file__}::{test_every_page_runs_in_order_in_one_fresh_folder.__name__}"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                   "--basetemp", str(tmp_path / "walk"), this]
        if pytestconfig.getoption("capture") == "no":  # pytest -s: the walk's summary and trace as it goes
            command.insert(3, "-s")
        returncode = subprocess.run(command, env=env, cwd=ROOT, timeout=3600).returncode
        assert returncode == 0, "the docs walk failed: see its output (captured stdout)"
        return
    import keras
    import matplotlib
    import tensorflow_datasets as tfds

    from lacnn_zoo.models import registry

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/tensorflow_datasets, ~/.keras: the walk's own
    registered = dict(registry._REGISTRY)
    walk = Walk(capsys.readouterr)
    try:
        with tfds.testing.mock_data(num_examples=24):
            only = os.environ.get("LACNN_ZOO_DOCS_WALK_PAGES")  # a comma-separated subset, while writing a page
            for page in pages_in_order():
                if not only or os.path.relpath(page, ROOT) in only.split(","):
                    walk.page(page)
    finally:
        registry._REGISTRY.clear()  # a snippet may register a preset: the zoo's registry is left as it was
        registry._REGISTRY.update(registered)
        keras.backend.clear_session()
    with capsys.disabled():
        print(f"\ndocs walk: {len(walk.ran)} commands and blocks ran, {len(walk.skipped)} not run")
        for where, reason in walk.skipped:
            print(f"  not run: {where}  ({reason})")
        for where, seconds in sorted(walk.ran, key=lambda r: -r[1])[:10]:
            print(f"  {seconds:6.1f} s  {where}")
    assert not walk.failures, "\n".join(walk.failures)
    assert len(walk.ran) >= 60 or os.environ.get("LACNN_ZOO_DOCS_WALK_PAGES")  # a subset runs fewer
