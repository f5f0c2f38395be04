"""Every console pktlab makes prints data as data: no emoji codes (`:a:` in an IPv6 address), no markup (`[/x]`
in a name), no guessing colours (issue 15 item 1)."""
import ast
import importlib
import json
from pathlib import Path

import pytest
from rich.console import Console

from testbed import cli

ROOT = Path(__file__).resolve().parents[2]
DATA = "fd77:3659:7e66:a::1 line:-1 :abcd: :b: [red]x[/] a[/y]b :thumbs_down:"


def console_calls():
    """(file, line) of every call of rich's Console(...) in testbed/ and bench/."""
    found = []
    for path in sorted(list((ROOT / "testbed").rglob("*.py")) + list((ROOT / "bench").rglob("*.py"))):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name == "Console":
                    found.append((str(path.relative_to(ROOT)), node.lineno))
    return found


def test_consoles_are_only_made_by_make_console():
    assert [where for where in console_calls() if where[0] != "testbed/console.py"] == []


MODULES = ["testbed.cli.common", "testbed.demo", "bench.common"]


def module_consoles():
    out = []
    for name in MODULES:
        mod = importlib.import_module(name)
        out += [(f"{name}.{attr}", c) for attr, c in vars(mod).items() if isinstance(c, Console)]
    return out


def test_every_module_console_prints_data_unchanged():
    consoles = module_consoles()
    assert {n for n, _ in consoles} >= {"testbed.cli.common.console", "testbed.cli.common.out",
                                       "testbed.demo.console", "bench.common.console"}
    for name, c in consoles:
        with c.capture() as cap:
            c.print(DATA)
        assert cap.get().strip() == DATA, name


def test_error_messages_keep_brackets_and_colons(capsys):
    assert cli.main(["validate", "line:-1"]) == 2
    err = capsys.readouterr().err
    assert "line:-1: N must be a whole number" in err
    assert cli.main(["validate", "x[/y]"]) == 2          # rich raised MarkupError on this name
    assert "x[/y]" in capsys.readouterr().err


@pytest.mark.parametrize("columns", ["200", "80"])
def test_status_prints_underlay_addresses_unchanged(tmp_path, monkeypatch, capsys, columns):
    """Whole addresses, whatever the width: a table cell folds rather than ending in '…'."""
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", columns)
    (tmp_path / "t").mkdir()
    links = [{"name": f"n1--n{i}", "a": "n1", "b": f"n{i}", "a_if": f"n1-eth{i}", "b_if": f"n{i}-eth0",
              "a_addr": f"fd77:3659:7e66:{i:x}::1", "b_addr": f"fd77:3659:7e66:{i:x}::2"} for i in range(2, 12)]
    state = {"name": "t", "id": "t.abc", "status": "ready", "source": "star:11", "seed": 1,
             "prefix": "fd77:3659:7e66::/48", "nodes": {f"n{i}": {"pid": 0, "start": None} for i in range(1, 12)},
             "agents": {}, "links": links, "addresses": {"n1": "fc00::1"}}
    (tmp_path / "t" / "state.json").write_text(json.dumps(state))
    assert cli.main(["status", "--run", "t"]) == 0
    text = capsys.readouterr().out
    assert "…" not in text
    if columns == "80":      # folded cells: glue each row's pieces back together
        text = "".join(line.replace("│", " ").replace(" ", "") for line in text.splitlines())
    assert "fd77:3659:7e66:a::1" in text and "fd77:3659:7e66:b::2" in text
    assert "\N{NEGATIVE SQUARED LATIN CAPITAL LETTER A}" not in text
