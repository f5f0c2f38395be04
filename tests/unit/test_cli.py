"""The command line explains itself: every subcommand's help renders, bad input gives clear errors (no root)."""
import pytest

from testbed import cli


def subcommands():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "cmd")
    return sorted(action.choices)


def test_main_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for name in subcommands():
        assert name in text
    assert "pktlab up grid:3x3" in text  # the examples


@pytest.mark.parametrize("name", subcommands())
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage: pktlab " + name)


def test_validate_reports_topology_errors(capsys):
    assert cli.main(["validate", "grid:0x3"]) == 2
    assert "grid:0x3" in capsys.readouterr().err
    assert cli.main(["validate", "ring:5"]) == 0
    assert "5 nodes, 5 links" in capsys.readouterr().out


def test_status_of_missing_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path))
    assert cli.main(["status", "--run", "nope"]) == 2
    assert "no run named 'nope'" in capsys.readouterr().err


def test_graph_writes_png(tmp_path):
    out = tmp_path / "t.png"
    assert cli.main(["graph", "triangle", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
