"""The inventory of SSH hosts a run may spread over, and where each node goes.

    hosts:
      h1: {address: 192.0.2.11, user: root, key: ~/.ssh/id_ed25519}
      h2: {address: lab2.example.org, user: admin, key: ~/.ssh/id_ed25519, port: 2222}
    known_hosts: ~/.ssh/known_hosts      # optional: pin host keys (else accepted on first contact, kept in the run)
    placement: {r1c1: h1, r1c2: h1}      # optional: node -> host

Per host: `address` (required), `user` (root), `key` (a private key file, required), `port` (22), `python`
(/usr/bin/python3), `root` (/var/lib/pktlab: the project copy and the runs' directories there), `tunnel_address` (the
address the other hosts reach this one at for VXLAN, an IP; default: `address` when that is an IP),
`proxy_command` (OpenSSH's ProxyCommand, %h %p %r expanded, for hosts behind a jump host or in a namespace).

Placement: a node's `host` attribute in the topology (`attrs: {host: h2}`), else the inventory's `placement`, else
round robin over the hosts in inventory order, in the topology's node order. A user other than root needs
passwordless sudo on its host.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,31}$")
HOST_KEYS = {"address", "user", "key", "port", "python", "root", "tunnel_address", "proxy_command"}
TOP_KEYS = {"hosts", "known_hosts", "placement"}


class InventoryError(ValueError):
    pass


@dataclass
class Host:
    name: str
    address: str
    key: str
    user: str = "root"
    port: int = 22
    python: str = "/usr/bin/python3"
    root: str = "/var/lib/pktlab"
    tunnel_address: str = ""
    proxy_command: str = ""

    def where(self) -> str:
        """How messages name the host: `h2 (admin@192.0.2.12:22)`."""
        return f"{self.name} ({self.user}@{self.address}:{self.port})"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Host":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Inventory:
    hosts: dict[str, Host]
    known_hosts: str = ""
    placement: dict[str, str] | None = None


def load(source) -> Inventory:
    """An inventory from a YAML file (path) or an already parsed mapping; InventoryError names what is wrong."""
    where = str(source) if isinstance(source, (str, os.PathLike)) else "inventory"
    if isinstance(source, (str, os.PathLike)):
        try:
            data = yaml.safe_load(Path(source).read_text())
        except OSError as e:
            raise InventoryError(f"{where}: cannot read: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise InventoryError(f"{where}: not YAML: {e}") from None
    else:
        data = source

    def fail(field, msg):
        raise InventoryError(f"{where}: {field}: {msg}")

    if not isinstance(data, dict) or not isinstance(data.get("hosts"), dict) or not data["hosts"]:
        fail("hosts", "expected a mapping of host name -> {address, user, key, ...} with at least one host")
    unknown = set(data) - TOP_KEYS
    if unknown:
        fail(", ".join(sorted(unknown)), f"unknown field (known: {', '.join(sorted(TOP_KEYS))})")
    hosts = {}
    for name, entry in data["hosts"].items():
        name = str(name)
        if not HOST_NAME.match(name):
            fail(f"hosts.{name}", "a host name is 1-32 lower-case letters, digits, '.' or '-'")
        hosts[name] = _host(name, entry, lambda f, m, n=name: fail(f"hosts.{n}.{f}" if f else f"hosts.{n}", m))
    known = data.get("known_hosts") or ""
    if known:
        known = os.path.expanduser(str(known))
        if not os.path.isfile(known):
            fail("known_hosts", f"{known}: no such file")
    placement = data.get("placement")
    if placement is not None:
        if not isinstance(placement, dict):
            fail("placement", "expected a mapping of node -> host")
        for node, host in placement.items():
            if host not in hosts:
                fail(f"placement.{node}", f"no host {host!r} in the inventory (hosts: {', '.join(hosts)})")
        placement = {str(k): str(v) for k, v in placement.items()}
    return Inventory(hosts, known, placement)


def _host(name: str, entry, fail) -> Host:
    if not isinstance(entry, dict):
        fail("", "expected a mapping with address, user, key")
    unknown = set(entry) - HOST_KEYS
    if unknown:
        fail(", ".join(sorted(unknown)), f"unknown field (known: {', '.join(sorted(HOST_KEYS))})")
    for field in ("address", "key"):
        if not isinstance(entry.get(field), str) or not entry[field]:
            fail(field, "required (a non-empty string)")
    key = os.path.abspath(os.path.expanduser(entry["key"]))
    if not os.path.isfile(key):
        fail("key", f"{key}: no such file")
    if not os.access(key, os.R_OK):
        fail("key", f"{key}: not readable")
    port = entry.get("port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        fail("port", f"expected an integer in 1..65535, got {port!r}")
    values = {}
    for field in ("user", "python", "root", "proxy_command"):
        if field in entry:
            if not isinstance(entry[field], str) or not entry[field]:
                fail(field, "expected a non-empty string")
            values[field] = entry[field]
    for field in ("python", "root"):
        if field in values and not values[field].startswith("/"):
            fail(field, f"expected an absolute path, got {values[field]!r}")
    tunnel = entry.get("tunnel_address") or entry["address"]
    try:
        tunnel = str(ipaddress.ip_address(tunnel))
    except ValueError:
        if "tunnel_address" in entry:
            fail("tunnel_address", f"expected an IP address, got {tunnel!r}")
        try:   # a host name: the other hosts reach this one at what it resolves to here
            tunnel = socket.getaddrinfo(tunnel, None, proto=socket.IPPROTO_UDP)[0][4][0]
        except OSError:
            fail("address", f"{entry['address']!r} does not resolve: give an IP, or tunnel_address")
    return Host(name, entry["address"], key, port=port, tunnel_address=tunnel, **values)


def place(topo, inventory: Inventory) -> dict[str, str]:
    """node -> host: the node's `host` attribute, else the inventory's placement, else round robin."""
    names = list(inventory.hosts)
    placement, robin = {}, 0
    fixed = inventory.placement or {}
    unknown = set(fixed) - set(topo.nodes)
    if unknown:
        raise InventoryError(f"placement: no node {sorted(unknown)[0]!r} in topology {topo.name}")
    for node, spec in topo.nodes.items():
        host = spec.attrs.get("host") or fixed.get(node)
        if host is None:
            host, robin = names[robin % len(names)], robin + 1
        elif host not in inventory.hosts:
            raise InventoryError(f"node {node}: host {host!r} is not in the inventory (hosts: {', '.join(names)})")
        placement[node] = host
    return placement
