"""The receiving end of a UDP flood experiment, run inside a node's namespace:

    python -m testbed.udp_receiver PORT SECONDS

listens on [::]:PORT for SECONDS and prints JSON {source address: [bytes received in second 0, 1, ...]}, one
count per whole second since it started (int(SECONDS) + 1 of them). kbit_after() turns one source's counts into
its mean rate after a warm-up, the steady-state goodput the lease experiments compare.
"""
import argparse
import json
import socket
import sys
import time


def listen(port: int) -> socket.socket:
    """A UDP socket bound to port on every address of the namespace."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.bind(("::", port))
    except OSError:
        sock.close()
        raise
    return sock


def receive(sock: socket.socket, seconds: float) -> dict[str, list[int]]:
    """Bytes per source per second received on a bound UDP socket during the next `seconds`."""
    sock.settimeout(0.2)              # wake up to see the end even when nothing arrives
    buckets = {}
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            data, addr = sock.recvfrom(65535)
        except socket.timeout:
            continue
        per = buckets.setdefault(addr[0], [0] * int(seconds + 1))
        per[min(int(time.monotonic() - start), len(per) - 1)] += len(data)
    return buckets


def kbit_after(per_second: list[int], warmup_s: float, seconds: float) -> float:
    """Mean kbit/s of one source's counts from `warmup_s` (a whole second) until the receiver stopped."""
    if warmup_s != int(warmup_s) or not 0 <= warmup_s < seconds:
        raise ValueError(f"warm-up must be a whole number of seconds below {seconds}, not {warmup_s}")
    return sum(per_second[int(warmup_s):]) * 8 / 1000 / (seconds - warmup_s)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.udp_receiver", description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int, help="UDP port to listen on")
    parser.add_argument("seconds", type=float, help="how long to listen")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536 or not args.seconds > 0:
        parser.error("port must be 1-65535 and seconds positive")
    try:
        sock = listen(args.port)
    except OSError as exc:
        print(f"udp_receiver: cannot listen on [::]:{args.port}: {exc}", file=sys.stderr)
        return 1
    with sock:
        buckets = receive(sock, args.seconds)
    print(json.dumps(buckets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
