#!/usr/bin/env python3
"""Pings a host at a fixed interval until SIGTERM/SIGINT, for interop.sh's migrate-net case.

    net-pinger.py HOST INTERVAL_MS

Sends one ICMP echo request every INTERVAL_MS (a raw socket: root; run it inside the case's network namespace)
whatever the replies do, so a switchover shows as a run of unanswered sequence numbers. Prints, flushed as they come,

    REPLY seq=N at=EPOCH_SECONDS           one per first reply (duplicates ignored)

and after the signal (sending stops, replies are awaited for 1 s more) one summary line

    PINGS sent=N replied=M lost=K max-gap-ms=G gap-from=EPOCH gap-to=EPOCH

lost = requests never answered; max-gap = the longest time between two consecutive replies, or from the last reply
until sending stopped (the outage), between gap-from and gap-to. Wall-clock times, so the caller can compare them with its own `date +%s.%N`.
"""
import os
import select
import signal
import socket
import struct
import sys
import time


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident, seq):
    payload = b"virtio-sharp migrate-net ping".ljust(56, b".")
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
    return struct.pack("!BBHHH", 8, 0, checksum(head + payload), ident, seq & 0xFFFF) + payload


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    host, interval = sys.argv[1], float(sys.argv[2]) / 1000
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    outstanding = {}   # seq & 0xFFFF -> full seq, until answered
    sent = replied = 0
    last_reply = None
    gap = (0.0, None, None)
    next_send = time.monotonic()
    drain_until = None
    while True:
        now = time.monotonic()
        if stopping and drain_until is None:
            drain_until = now + 1.0
        if drain_until is not None and now >= drain_until:
            break
        if drain_until is None and now >= next_send:
            try:
                sock.sendto(echo_request(ident, sent), (host, 0))
                outstanding[sent & 0xFFFF] = sent
            except OSError:
                pass   # no route yet / buffer full: counted as sent and lost
            sent += 1
            next_send += interval
            if next_send < now:   # the machine stalled: do not burst to catch up
                next_send = now + interval
        wait = (drain_until if drain_until is not None else next_send) - time.monotonic()
        ready, _, _ = select.select([sock], [], [], max(0.0, wait))
        if not ready:
            continue
        data = sock.recv(2048)
        ihl = (data[0] & 0x0F) * 4
        if len(data) < ihl + 8:
            continue
        typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if typ != 0 or rid != ident or rseq not in outstanding:
            continue
        seq = outstanding.pop(rseq)
        at = time.time()
        replied += 1
        if last_reply is not None and at - last_reply > gap[0]:
            gap = (at - last_reply, last_reply, at)
        last_reply = at
        print(f"REPLY seq={seq} at={at:.3f}", flush=True)
    stopped = time.time() - 1.0   # when sending stopped: silence since the last reply counts as a gap too
    if last_reply is not None and stopped - last_reply > gap[0]:
        gap = (stopped - last_reply, last_reply, stopped)
    fmt = lambda t: f"{t:.3f}" if t is not None else "none"
    print(f"PINGS sent={sent} replied={replied} lost={sent - replied} max-gap-ms={int(gap[0] * 1000)} "
          f"gap-from={fmt(gap[1])} gap-to={fmt(gap[2])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
