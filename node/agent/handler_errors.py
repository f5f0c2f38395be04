"""The edge of every packet, request and timer handler: an exception that escapes a handler is caught there,
counted by reason and logged once per reason.

A handler is what the event loop calls for a readable socket or a due timer, and what the data plane calls for
one message of another plane (route-server content, switch control messages). Bad input should never get that
far (parsers raise their own errors, the data plane counts drops by reason); what does is a bug or an input
nobody foresaw, and it must cost that one call: never the loop, the node's periodic work or a session.

The reason is ``<handler>:<exception type>``. Its first occurrence is logged with the traceback; later ones are
only counted, so a flood of forged packets cannot flood the log. The counts are in the agent's ``counters``
(``handler_errors``).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class HandlerErrors:
    def __init__(self, logger: logging.Logger | None = None):
        self.counts: dict[str, int] = {}
        self._log = logger or log

    def record(self, handler: str, exc: BaseException) -> None:
        reason = f"{handler}:{type(exc).__name__}"
        n = self.counts.get(reason, 0) + 1
        self.counts[reason] = n
        if n == 1:
            self._log.error("handler %s failed: %r (logged once; every occurrence is counted as %s)",
                            handler, exc, reason, exc_info=exc)

    def guard(self, handler: str, fn, result=None):
        """``fn`` behind the edge: an exception is recorded under ``handler`` and ``result`` returned instead."""
        def guarded(*args):
            try:
                return fn(*args)
            except Exception as e:
                self.record(handler, e)
                return result
        guarded.__qualname__ = guarded.__name__ = handler
        return guarded
