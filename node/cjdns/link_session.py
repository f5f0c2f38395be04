"""Peer-link sessions: every frame on a peer link rides in a CryptoAuth session with that peer (cjdns "outer" sessions).

cjdns keeps one CryptoAuth session per direct peer (``net/InterfaceController.c``: ``CryptoAuth_newSession(...,
"outer")``) and encrypts every switch frame it sends to that peer in it (``sendFromSwitch``), under the end-to-end
("inner") sessions of SessionManager. So a frame is encrypted twice on the wire, and each hop decrypts what it
receives and re-encrypts what it forwards. pktlab does the same; the whole UDP payload of a peer link is one
CryptoAuth packet (pkt-reference.md §3.1), with no session handle (the link itself says whose session it is)::

    handshake  nonce u32 0..3 | auth challenge 12 | random nonce 24 | sender's permanent key 32
               | box(secret, nonce, sender's temporary key 32 || switch frame)
    data       nonce u32 >= 4 | box(data secret, nonce, switch frame)        (16-byte tag, 20 bytes of overhead)

What pktlab defines here (cjdns leaves it to configuration or to its newer Noise links):

* the peer's permanent key is pinned from the link's configuration: a handshake from another key is rejected
  (``wrong_key``); there is no password (auth type 0). cjdns peers authenticate with a password instead;
* the legacy CryptoAuth of node/cjdns/cryptoauth.py for links too (cjdns v22 nodes use Noise between each other
  for peer links; the inner sessions stay CryptoAuth);
* until the session is established (data from the peer decrypted), a frame is taken only when it is addressed
  to our own router, i.e. its label's last byte is 1 (``receivedPostCryptoAuth`` in cjdns): the link pings and
  their pongs ride in the handshake packets and bring the link up, while a replayed handshake cannot push frames
  through the switch (``not_established``).

Everything else is CryptoAuth's: crossing Hellos resolved by key order, a Hello with a new temporary key
restarts the session (a restarted peer), a 64-packet replay window (a duplicated or much reordered frame is a
``replay`` drop), a reset after 60 s without authenticated traffic (the link pings keep it alive).
Pure: no I/O, the time is passed in. Rejections raise CryptoAuthError with a ``reason``.
"""
from __future__ import annotations

from .cryptoauth import CryptoAuthError, Session

ROUTER_LABEL_BYTE = 7      # the label's last byte: 1 for a frame addressed to the receiving router


class LinkSession:
    def __init__(self, identity, peer_key: bytes, now: float = 0.0, rng=None):
        self.session = Session(identity, peer_key, initiator=True, now=now, rng=rng)

    @property
    def established(self) -> bool:
        return self.session.established

    @property
    def state(self) -> str:
        return self.session.state.name

    def seal(self, frame: bytes, now: float) -> bytes:
        """The CryptoAuth packet that carries ``frame`` to the peer (a Hello or Key while the handshake runs)."""
        return self.session.encrypt(frame, now)

    def open(self, packet: bytes, now: float) -> bytes:
        """The switch frame inside a packet from the peer, or CryptoAuthError. A handshake the session accepted
        stays accepted even when the frame it carried is then refused as ``not_established``."""
        frame = self.session.decrypt(packet, now)
        if not self.session.established and (len(frame) <= ROUTER_LABEL_BYTE or frame[ROUTER_LABEL_BYTE] != 1):
            raise CryptoAuthError("not_established", "a frame through the switch before the link session is up")
        return frame
