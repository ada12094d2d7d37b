#!/usr/bin/env python3
"""Live-migrates a running QEMU over QMP, for interop.sh's migrate cases.

    qmp-migrate.py SOURCE_QMP_SOCKET URI TIMEOUT_SECONDS [BYTES_PER_SECOND]

Connects to the source's QMP socket (-qmp unix:PATH,server=on,wait=off), sets the bandwidth limit (default 32 MiB/s:
slow enough that the guest keeps doing I/O while its RAM is being copied, so the back-end writes pages QEMU has already
sent and only the dirty log brings them over again) and a downtime limit of 1 s, starts `migrate` to URI (the destination runs with -incoming URI),
polls `query-migrate` every 100 ms until it completes or fails, prints one summary line
(MIGRATION status=... total-ms=... downtime-ms=... transferred=... dirty-syncs=...) and quits the source, whose
guest now runs on the destination (a source whose migration failed is quit too). Exit 0 only if the migration
completed within TIMEOUT_SECONDS.
"""
import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rwb")
        self.read()  # the greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.file.readline()
        if not line:
            raise EOFError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            r = self.read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error'].get('desc', r['error'])}")
            # anything else is an asynchronous event: skip it


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    path, uri, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    bandwidth = int(sys.argv[4]) if len(sys.argv) == 5 else 32 << 20
    qmp = Qmp(path, 30)
    qmp.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth, "downtime-limit": 1000})
    qmp.cmd("migrate", uri=uri)
    deadline = time.monotonic() + timeout
    info = {}
    while time.monotonic() < deadline:
        info = qmp.cmd("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    ram = info.get("ram", {})
    status = info.get("status", "none")
    print(f"MIGRATION status={status} total-ms={info.get('total-time', '?')} downtime-ms={info.get('downtime', '?')} "
          f"transferred={ram.get('transferred', '?')} dirty-syncs={ram.get('dirty-sync-count', '?')}"
          + (f" error={info['error-desc']!r}" if "error-desc" in info else ""), flush=True)
    if status not in ("completed", "failed", "cancelled"):
        qmp.cmd("migrate_cancel")
    # The source quits either way: after a completed migration its guest runs on the destination, after a failed one
    # the test has failed and nothing should keep running.
    try:
        qmp.cmd("quit")
    except (EOFError, OSError):
        pass
    return 0 if status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
