"""The other side of an A/B run: pyiocp as it was at a git ref, in its own venv.

    python benchmarks/baseline_build.py REF DIR     # build only; prints the venv's python

`run_load.py --baseline REF` uses this module to run every pyiocp case twice
per round, once with the pyiocp the runner's Python imports (the current
tree, as installed) and once with the baseline.  The baseline is built the
way the README's serve command installs pyiocp, non-editable, so that it
cannot import anything from the current tree:

  1. `git clone --shared --no-checkout` of this repository, then a detached
     checkout of REF's commit (the clone borrows this repository's objects,
     so any commit that exists here works, reachable from a branch or not);
  2. `python -m venv` with the runner's own interpreter (same CPython for
     both sides);
  3. `pip install CLONE`, as the README's serve command installs pyiocp:
     pip's isolated build environment takes Cython and setuptools from the
     same index as the current side's `pip install .`, so both sides are
     compiled by the same tools with the same flags (CFLAGS from the
     environment apply to both);
  4. a probe from a neutral directory that the venv imports its own pyiocp.

Everything goes to DIR/build.log; a failure raises BaselineError with the
log's tail.  DIR is the runner's temporary directory unless the caller asks
for a cache, which is keyed by the commit hash and the Python version and
always announced when reused.
"""
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

BUILT_MARKER = "BUILT.json"       # written last: a directory without it is an unfinished build


class BaselineError(Exception):
    pass


class Baseline:
    """A built baseline: where its sources and its Python are."""

    def __init__(self, ref, commit, subject, root):
        self.ref = ref
        self.commit = commit
        self.short = commit[:9]
        self.subject = subject
        self.root = root
        self.src = os.path.join(root, "src")
        self.venv = os.path.join(root, "venv")
        self.python = os.path.join(self.venv, "bin", "python")
        self.log_path = os.path.join(root, "build.log")
        self.reused = False
        self.info = {}               # probe: version, package directory

    def path(self, *parts):
        return os.path.join(self.src, *parts)

    def describe(self):
        return f"{self.short} ({self.subject})" + (f", --baseline {self.ref}" if self.ref != self.commit else "")


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)


def resolve(repo, ref):
    """(full commit hash, subject) of REF in the repository, or BaselineError."""
    r = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if r.returncode != 0 or not r.stdout.strip():
        raise BaselineError(f"--baseline {ref!r}: no such commit in {repo} "
                            f"(try a hash, a branch, or HEAD~N; `git log --oneline` lists them)")
    commit = r.stdout.strip()
    subject = git(repo, "log", "-1", "--format=%s", commit).stdout.strip()
    return commit, subject


def has_file(repo, commit, path):
    """Whether the commit's tree holds PATH (checked before any clone or build)."""
    return git(repo, "cat-file", "-e", f"{commit}:{path}").returncode == 0


def tree_state(repo):
    """'abc123456' or 'abc123456 + uncommitted changes' for the working tree."""
    head = git(repo, "rev-parse", "--short=9", "HEAD").stdout.strip() or "?"
    dirty = git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head + (" + uncommitted changes" if dirty else "")


def probe_pyiocp(python, env=None):
    """Imports pyiocp with PYTHON from a neutral directory: {"version", "package"} or BaselineError."""
    code = ("import os, pyiocp; print(getattr(pyiocp, '__version__', '?')); "
            "print(os.path.dirname(os.path.abspath(pyiocp.__file__)))")
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise BaselineError(f"{python} cannot import pyiocp: {last}")
    version, package = r.stdout.strip().splitlines()[-2:]
    return {"version": version, "package": package}


def clean_env():
    """The environment for the baseline's Python: nothing that points at the current tree."""
    env = dict(os.environ)
    for k in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(k, None)
    return env


def _run_logged(cmd, logf, env, cwd=None):
    logf.write(f"\n$ {shlex.join(cmd)}\n")
    logf.flush()
    r = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    return r.returncode


def _tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _fail(base, what):
    raise BaselineError(f"building the baseline {base.describe()} failed: {what}\n"
                        f"last lines of {base.log_path}:\n{_tail(base.log_path)}")


def build(repo, ref, work_dir, cache_dir=None, log=print):
    """Clones, builds and probes the baseline; returns a Baseline.

    work_dir: where a fresh build goes (the runner's temporary directory).
    cache_dir: if set, builds live in cache_dir/<commit>-py<X.Y> and a
    finished one is reused (and said so) instead of built again."""
    commit, subject = resolve(repo, ref)
    env = clean_env()
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    if cache_dir:
        root = os.path.join(os.path.abspath(cache_dir), f"{commit}-py{pyver}")
    else:
        root = os.path.join(work_dir, "baseline")
    base = Baseline(ref, commit, subject, root)
    marker = os.path.join(root, BUILT_MARKER)
    if cache_dir and os.path.exists(marker):
        try:
            with open(marker) as f:
                built = json.load(f)
            base.info = probe_pyiocp(base.python, env)
            base.reused = True
            log(f"REUSING the cached baseline build of {base.describe()} from {root} "
                f"(built {built.get('date', '?')}; delete that directory to rebuild)")
            return base
        except (OSError, ValueError, BaselineError) as e:
            log(f"the cached baseline in {root} is unusable ({e}): building it again")
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    t0 = time.monotonic()
    log(f"building the baseline {base.describe()} in {root} (log: {base.log_path})")
    with open(base.log_path, "w") as logf:
        steps = [
            (["git", "clone", "--quiet", "--shared", "--no-checkout", repo, base.src], None, "git clone"),
            (["git", "-C", base.src, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach",
              commit], None, "git checkout"),
            ([sys.executable, "-m", "venv", base.venv], None, "python -m venv"),
            # As the README installs pyiocp (non-editable, pip's isolated build environment): the build
            # tools come from the same index as the current side's `pip install .`.  From a neutral
            # directory, so that the baseline's package lands in its own venv only.
            ([base.python, "-m", "pip", "install", "--quiet", base.src],
             tempfile.gettempdir(), "pip install of the baseline"),
        ]
        for cmd, cwd, what in steps:
            if _run_logged(cmd, logf, env, cwd) != 0:
                logf.close()
                _fail(base, what)
    try:
        base.info = probe_pyiocp(base.python, env)
    except BaselineError as e:
        _fail(base, str(e))
    if not os.path.abspath(base.info["package"]).startswith(os.path.abspath(base.venv) + os.sep):
        _fail(base, f"its Python imports pyiocp from {base.info['package']}, not from its own venv")
    with open(marker, "w") as f:
        json.dump({"commit": commit, "python": sys.version, "date":
                   datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}, f)
    log(f"baseline built in {time.monotonic() - t0:.0f} s: pyiocp {base.info['version']} "
        f"from {base.info['package']}")
    return base


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0].startswith("-"):
        sys.exit(__doc__.strip().splitlines()[2].strip())
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        base = build(repo, argv[0], None, cache_dir=argv[1])
    except BaselineError as e:
        sys.exit(f"baseline_build: {e}")
    print(base.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
