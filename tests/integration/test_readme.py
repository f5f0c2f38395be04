"""The README walked from top to bottom (issue 15): every command of its shell blocks runs, in order, as a user
would type it (`pktlab` on the PATH, a shell per line, runs of its own), and must succeed; then its Python
example runs as a script and its pytest example as a test under the plugin.

A command's comment may say how it is run (keep this short; each says why in the README itself):
    "not run by the README test"   skipped: `make demo` and `make test` (they install packages / are the suite)
    "exit status N"                must exit with N (`lab check` before the lab is solved)
    "until Ctrl-C"                 runs until it prints its first line, then gets Ctrl-C and must end cleanly
After every block, no run may be left over: each block cleans up after itself, as the README shows."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]
ROOT = Path(__file__).resolve().parents[2]
SKIP = "not run by the README test"
EXIT = re.compile(r"exit status (\d+)")
COMMENT = re.compile(r"\s+#\s")


def blocks(lang: str) -> list[list[str]]:
    """The README's fenced blocks of one language, as lists of lines (only those at the start of a line)."""
    text = (ROOT / "README.md").read_text()
    return [b.splitlines() for b in re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)]


def commands(block: list[str]) -> list[tuple[str, str]]:
    """(command, comment) of each line that is a command."""
    out = []
    for line in block:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = COMMENT.split(line, maxsplit=1)
        out.append((parts[0].strip(), parts[1] if len(parts) > 1 else ""))
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("readme")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    (bin_dir / "pktlab").write_text(f"#!/bin/sh\nexec {sys.executable} -m testbed.cli \"$@\"\n")
    (bin_dir / "pktlab").chmod(0o755)
    e = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(ROOT),
             PKTLAB_HOME=str(base / "runs"), PKTLAB_RECORDS=str(base / "records"), COLUMNS="120")
    e.pop("PKTLAB_RUN", None)
    e["cwd"] = str(base)
    return e


def run_line(env: dict, command: str, comment: str) -> None:
    cwd = env["cwd"]
    penv = {k: v for k, v in env.items() if k != "cwd"}
    if "until Ctrl-C" in comment:
        p = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=penv, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        first = p.stdout.readline()
        os.killpg(p.pid, signal.SIGINT)
        rest, err = p.communicate(timeout=60)
        assert first.strip(), f"{command}: printed nothing before Ctrl-C; stderr: {err}"
        assert p.returncode in (0, 130) and "Traceback" not in err, f"{command}: exit {p.returncode}\n{err}"
        return
    want = int(EXIT.search(comment).group(1)) if EXIT.search(comment) else 0
    r = subprocess.run(["bash", "-c", command], cwd=cwd, env=penv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == want, f"{command}: exit {r.returncode}, expected {want}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, f"{command}:\n{r.stderr}"


def left_over_runs(env) -> list[str]:
    home = Path(env["PKTLAB_HOME"])
    return sorted(p.name for p in home.iterdir()) if home.is_dir() else []


def test_readme_marks_few_commands():
    skipped = [c for b in blocks("sh") for c, comment in commands(b) if SKIP in comment]
    assert skipped == ["make demo", "make test"]


@pytest.mark.parametrize("index", range(len(blocks("sh"))))
def test_shell_block(env, index):
    block = blocks("sh")[index]
    for command, comment in commands(block):
        if SKIP in comment:
            continue
        run_line(env, command, comment)
    assert left_over_runs(env) == [], f"block {index} left runs behind: {block}"


def test_python_example(env):
    [code] = [b for b in blocks("python") if "from testbed.mesh import Mesh" in "\n".join(b)]
    r = subprocess.run([sys.executable, "-c", "\n".join(code)], cwd=env["cwd"], capture_output=True, text=True,
                       timeout=600, env={k: v for k, v in env.items() if k != "cwd"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert left_over_runs(env) == []


def test_pytest_example(env, tmp_path):
    [code] = [b for b in blocks("python") if "@pytest.mark.mesh" in "\n".join(b)]
    test_file = tmp_path / "test_readme_example.py"
    test_file.write_text("import pytest\n\n\n" + "\n".join(code) + "\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in env.items() if k != "cwd"})
    assert r.returncode == 0 and " passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    assert left_over_runs(env) == []
