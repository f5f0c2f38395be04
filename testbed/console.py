"""The one way pktlab makes a rich Console: data prints as data.

rich would turn `:a:` in `fd77:3659:7e66:a::1` into an emoji, read `[/x]` in a file name as a markup tag (and
raise on it) and colour numbers it guesses at. Every console pktlab makes comes from ``make_console``: no emoji
codes, no markup, no highlighting. Colour is asked for explicitly, with ``style=`` or ``styled(text, style)``,
never by formatting a value into a markup string.
"""
from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text


def make_console(stderr: bool = False, **kwargs) -> Console:
    kwargs.setdefault("soft_wrap", True)       # a message is one line (the terminal wraps it), a table fits the width
    return Console(stderr=stderr, emoji=False, markup=False, highlight=False, **kwargs)


def styled(*parts) -> Text:
    """Text from plain strings and (string, style) pairs, e.g. styled(("error: ", "red"), message)."""
    return Text.assemble(*((str(p), "") if not isinstance(p, tuple) else (str(p[0]), p[1]) for p in parts))


def data_table(*headers, **kwargs) -> Table:
    """A rich Table whose cells fold onto more lines rather than end in '…': an address is shown whole."""
    t = Table(**kwargs)
    for h in headers:
        t.add_column(h, overflow="fold")
    return t
