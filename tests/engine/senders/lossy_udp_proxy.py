"""A UDP relay that loses datagrams, independent of cyclestream: the standard library only.

Every datagram that arrives at ``--listen`` is forwarded to ``--to``, except a random ``--loss``
share of them (seeded, so a run is repeatable) and the first ``--drop-first``.  When it ends
(SIGTERM or ``--seconds``), it prints one JSON line with what it forwarded and dropped.

    python tests/engine/senders/lossy_udp_proxy.py --listen 5000 --to 5001 --loss 0.04
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--to", type=int, required=True)
    p.add_argument("--loss", type=float, default=0.04)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--drop-first", type=int, default=0, help="lose this many datagrams first (a keyframe)")
    p.add_argument("--seconds", type=float, default=120.0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    inbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    inbound.bind(("127.0.0.1", args.listen))
    inbound.settimeout(0.2)
    outbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    counts = {"forwarded": 0, "dropped": 0}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    deadline = time.monotonic() + args.seconds
    print("ready", flush=True)
    while not stopping and time.monotonic() < deadline:
        try:
            data = inbound.recv(65536)
        except TimeoutError:
            continue
        if rng.random() < args.loss or counts["dropped"] + counts["forwarded"] < args.drop_first:
            counts["dropped"] += 1
            continue
        outbound.sendto(data, ("127.0.0.1", args.to))
        counts["forwarded"] += 1
    sys.stdout.write(json.dumps(counts) + "\n")


if __name__ == "__main__":
    main()
