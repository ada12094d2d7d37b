#!/usr/bin/env python3
"""Reference entropy source for the rng interop cases (interop.sh rng-qemu*): an EGD
server on a unix socket for QEMU's `-object rng-egd,chardev=...`, which feeds the built-in
`-device virtio-rng-pci`. It answers each EGD "read N bytes, blocking" request (0x02 N)
with N bytes from os.urandom and counts them, so the host knows exactly how many bytes the
device handed to the guest. On SIGTERM, or when QEMU closes the socket, it prints one
line in the style of our back-ends:

    final stats: connections 1 requests N bytes-served N

    python3 egd-counter.py SOCKET_PATH [ACCEPT_TIMEOUT_SECONDS]
"""
import os
import signal
import socket
import sys

path = sys.argv[1]
accept_timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 120.0
stats = {"connections": 0, "requests": 0, "bytes-served": 0, "unknown-commands": 0}


def finish(*_):
    print("final stats: " + " ".join(f"{k} {v}" for k, v in stats.items()), flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, finish)
if os.path.exists(path):
    os.unlink(path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
srv.settimeout(accept_timeout)
print(f"egd-counter: listening on {path}", flush=True)
try:
    conn, _ = srv.accept()
except socket.timeout:
    print(f"egd-counter: no connection after {accept_timeout:.0f}s", flush=True)
    finish()
conn.settimeout(None)
stats["connections"] += 1
print("egd-counter: front-end connected", flush=True)
pending = b""
while True:
    data = conn.recv(4096)
    if not data:
        break
    pending += data
    while pending:
        cmd = pending[0]
        if cmd == 0x02:                # blocking read: 0x02 LEN
            if len(pending) < 2:
                break
            n = pending[1]
            pending = pending[2:]
            conn.sendall(os.urandom(n))
            stats["requests"] += 1
            stats["bytes-served"] += n
        else:                          # QEMU sends nothing else; count and skip it
            stats["unknown-commands"] += 1
            pending = pending[1:]
print("egd-counter: front-end closed the socket", flush=True)
finish()
