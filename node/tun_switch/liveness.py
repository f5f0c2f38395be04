"""Is the peer at the other end of a link alive? Liveness that holds on a busy machine.

What cjdns does (net/InterfaceController.c): every authenticated message from a peer refreshes its
``timeOfLastMessage``; a peer silent for 3 s is "lazy" and gets pinged, one silent for 20 s is unresponsive. The
fast signal of a dead link is not that timeout but the switch: a send that fails answers UNDELIVERABLE at once (here:
ECONNREFUSED, the peer's agent is gone; ENETDOWN, the link itself is down; see peer_link.py and forwarding.py).
What TCP does (RFC 6298): the retransmission timeout follows the measured round trip, RTO = SRTT + 4 RTTVAR with a
floor, so a slow path is not a lost packet.

pktlab's rule, per link (``Liveness``):

* a link is **up** once the peer answered one of our probes (a switch PING to its router): a valid PONG proves
  both directions work. Each answer is an RTT sample for SRTT/RTTVAR (alpha 1/8, beta 1/4).
* a probe goes out at a housekeeping run (KEEPALIVE_S apart) only when it tells us something (``wants_probe``), as
  cjdns pings only quiet peers: the link is not up, or the peer has been quiet for QUIET_S, or a probe is still
  unanswered (the misses must be counted), or our last answer is ANSWER_EVERY_S old (hearing the peer does not
  prove that it hears us). On an idle mesh the two ends' probes and pongs keep each other from being quiet, so a
  link carries about two probes every three seconds; QUIET_S is longer than the housekeeping period for that (at
  KEEPALIVE_S a peer heard a second ago was quiet at the next run: 1.4 probes a second per link, each with its pong
  most of a 2000-node mesh's idle traffic). A silent peer is probed every second, and found as soon as before.
* while up, **any frame** from the peer is proof of life (its own probes, data, pongs): silence is counted from the
  last one.
* a probe is **missed** when no pong came since it was sent and it is overdue by the RTO (floor MIN_RTO_S). Probes
  only count if our own loop was on time: when the node sees its own loop stalled (``LoopWatch``: a housekeeping
  run came more than STALL_S late, the process was descheduled), every probe outstanding then is forgiven; its pong
  may be sitting unread in our socket, and the silence is ours, not the peer's.
* the link goes **down** when MISSED_PROBES counted probes are missed and the peer has been silent for its
  silence limit, or when ONE_WAY_PROBES are missed while we still hear the peer (it does not hear us: a one-way
  failure).
* the **silence limit** is DEAD_AFTER_S, or SLACK_FACTOR times the longest silence this peer came back from lately,
  at most MAX_DEAD_AFTER_S (cjdns's 20 s): as TCP's RTO follows the measured variation, a peer whose agent host is
  slow now and then (a host of many nodes that forward a route server's traffic, on a saturated machine) gets the
  slack it showed it needs. A silence counts when the peer was heard again while its link was up, or when its link
  comes back within RELEARN_S of going down (a false verdict: the peer had only stalled; a real cut lasts longer).
  The slack learned shrinks by SLACK_DECAY seconds a second, back to DEAD_AFTER_S after a busy spell.
* a down link is probed every DOWN_PROBE_S (node.py) and is up again with its first valid pong.

So a peer must be silent for at least 3.5 s while our loop runs on time before its link goes down, whatever the
load; and a really silent peer is still found in that time, or in at most 20 s if it was slow lately.
"""
from __future__ import annotations

KEEPALIVE_S = 1.0        # the liveness verdict (and a probe to each peer that needs one) this often
MIN_RTO_S = 1.0          # RFC 6298's floor for the retransmission timeout
MAX_RTO_S = 3.0
MISSED_PROBES = 3
DEAD_AFTER_S = 3.5       # ... and this much silence from the peer (the least silence limit)
MAX_DEAD_AFTER_S = 20.0  # the largest (cjdns: a peer silent for 20 s is unresponsive)
SLACK_FACTOR = 2.0       # the silence limit: this many times the longest silence the peer came back from lately
SLACK_DECAY = 1 / 60     # ... which shrinks by a second a minute
RELEARN_S = 5.0          # a link back up within this of going down was a false verdict: its silence is learned
QUIET_S = 1.5            # a peer not heard for this long is probed
ANSWER_EVERY_S = 3.0     # a peer we hear is still probed this often: an answer proves it hears us
ONE_WAY_PROBES = 8       # missed while the peer's frames still arrive: it does not hear us
STALL_S = 0.5            # a housekeeping run this much later than its period: our own loop stalled


class Liveness:
    """The liveness of one peer link (see the module docstring). Times are the node's clock, in seconds."""

    __slots__ = ("up", "last_heard", "last_answered", "srtt", "rttvar", "outstanding", "slack", "slack_at",
                 "down_at")

    def __init__(self):
        self.up = False
        self.last_heard = self.last_answered = None
        self.srtt = self.rttvar = None
        self.outstanding = []        # send times of probes not answered since (sent while our loop was on time)
        self.slack = self.slack_at = 0.0   # the longest silence the peer came back from, as of slack_at
        self.down_at = None

    @property
    def rto(self) -> float:
        if self.srtt is None:
            return MIN_RTO_S
        return min(max(self.srtt + 4 * self.rttvar, MIN_RTO_S), MAX_RTO_S)

    def silence_limit(self, now: float) -> float:
        """How long the peer may be silent before its link goes down (see the module docstring)."""
        slack = self.slack - (now - self.slack_at) * SLACK_DECAY
        return min(max(DEAD_AFTER_S, SLACK_FACTOR * slack), MAX_DEAD_AFTER_S)

    def _came_back(self, now: float) -> None:
        """The peer was heard after a silence (only long ones matter: SLACK_FACTOR times a short one is under
        DEAD_AFTER_S); learn it if its link stayed up or was down only a moment."""
        if self.last_heard is None or now - self.last_heard <= KEEPALIVE_S:
            return
        if self.up or (self.down_at is not None and now - self.down_at <= RELEARN_S):
            silence = now - self.last_heard
            if silence > self.slack - (now - self.slack_at) * SLACK_DECAY:
                self.slack, self.slack_at = silence, now

    def heard(self, now: float) -> None:
        """Any frame from the peer."""
        self._came_back(now)
        self.last_heard = now

    def answered(self, rtt: float, now: float) -> bool:
        """A valid pong to one of our probes: an RTT sample; True if that brought the link up."""
        self._came_back(now)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.outstanding.clear()
        self.last_heard = self.last_answered = now
        came_up = not self.up
        self.up = True
        return came_up

    def wants_probe(self, now: float) -> bool:
        """Whether a probe at this housekeeping run tells us something (see the module docstring)."""
        return (not self.up or bool(self.outstanding) or self.last_heard is None
                or now - self.last_heard >= QUIET_S or now - self.last_answered >= ANSWER_EVERY_S)

    def probe_sent(self, now: float) -> None:
        self.outstanding.append(now)
        del self.outstanding[:-2 * ONE_WAY_PROBES]     # enough to count ONE_WAY_PROBES overdue ones

    def forgive(self) -> None:
        """Our loop stalled: what went unanswered meanwhile is not the peer's fault."""
        self.outstanding.clear()

    def missed(self, now: float) -> int:
        rto = self.rto
        return sum(1 for sent in self.outstanding if now - sent > rto)

    def check(self, now: float) -> bool:
        """The verdict at a housekeeping run; True if the link just went down."""
        if not self.up:
            return False
        missed = self.missed(now)
        silent = self.last_heard is None or now - self.last_heard >= self.silence_limit(now)
        if (missed >= MISSED_PROBES and silent) or missed >= ONE_WAY_PROBES:
            self.up = False
            self.down_at = now
            self.outstanding.clear()
            return True
        return False

    def describe(self, now: float) -> dict:
        return {"srtt_ms": None if self.srtt is None else round(self.srtt * 1000, 3),
                "rto_ms": round(self.rto * 1000, 1), "missed_probes": self.missed(now),
                "silence_limit_s": round(self.silence_limit(now), 2),
                "silent_s": None if self.last_heard is None else round(now - self.last_heard, 3)}


class LoopWatch:
    """Detects that our own loop stalled: a periodic run that came more than STALL_S after its period."""

    def __init__(self, period: float):
        self.period = period
        self.last = None
        self.stalls = 0

    def tick(self, now: float) -> bool:
        stalled = self.last is not None and now - self.last > self.period + STALL_S
        self.last = now
        self.stalls += stalled
        return stalled
