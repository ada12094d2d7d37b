#!/usr/bin/env python3
"""Live-migrates a running QEMU over QMP, for interop.sh's migrate cases.

    qmp-migrate.py SOURCE_QMP_SOCKET URI TIMEOUT_SECONDS [BYTES_PER_SECOND] [--compare DEST_QMP_SOCKET] [--hold SECONDS]
                   [--signal IMAGE:OFFSET --await LOG:TEXT]

Connects to the source's QMP socket (-qmp unix:PATH,server=on,wait=off), sets the bandwidth limit (default 32 MiB/s:
slow enough that the guest keeps doing I/O while its RAM is being copied, so the back-end writes pages QEMU has already
sent and only the dirty log brings them over again) and a downtime limit of 1 s, starts `migrate` to URI (the destination runs with -incoming URI),
polls `query-migrate` every 100 ms until it completes or fails, prints one summary line
(MIGRATION status=... total-ms=... downtime-ms=... transferred=... dirty-syncs=...) and quits the source, whose
guest now runs on the destination (a source whose migration failed is quit too). Exit 0 only if the migration
completed within TIMEOUT_SECONDS.

--hold: after the first pass over RAM, keep the migration iterating for SECONDS (1/32 of the bandwidth, then all;
the downtime limit is 1 ms until the hold ends, so QEMU cannot finish before it):
the pass goes up in guest-physical address order and the guest's busiest pages sit high, so without a hold the
migration ends right after the pass reaches them and a write to a page already sent has almost no time to happen.

--signal / --await (with --hold): when the hold starts, write "LATEFILL" at OFFSET of the guest's disk image (the
guest's testbed.latefill job polls it), and keep holding until TEXT appears in the guest's console LOG (at most 60 s;
a line HOLD signal=... await=seen|timeout says which). The guest then fills page-cache pages by DMA after QEMU sent
them, so only the back-end's dirty log can bring their contents over: without it the guest's check on the
destination fails.

--compare: the destination was started with -S (it stays paused once the incoming migration is loaded) and a QMP
socket. Before anything runs again, the guest RAM of both QEMUs (their memory-backend-memfd, read through
/proc/PID/fd) is compared page by page and a line MEMCOMPARE pages=N differ=M [first=0x...] is printed; then the
destination is continued and the source quit. With complete dirty logging the two are equal: the source is stopped
and its back-ends have finished, so every page the back-end wrote after QEMU sent it was logged and sent again.
"""
import os
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


def qemu_pid(marker):
    """The QEMU process whose command line contains marker (a socket path or URI unique to it)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"qemu-system-x86_64") and any(marker.encode() in a for a in args):
            return int(pid)
    raise RuntimeError(f"no QEMU process with {marker!r} on its command line")


def guest_ram(pid):
    """An open file of the QEMU's guest RAM: the largest memfd its memory-backend-memfd made."""
    best = None
    for fd in os.listdir(f"/proc/{pid}/fd"):
        p = f"/proc/{pid}/fd/{fd}"
        try:
            if os.readlink(p).startswith("/memfd:memory-backend-memfd"):
                size = os.stat(p).st_size
                if best is None or size > best[0]:
                    best = (size, p)
        except OSError:
            continue
    if best is None:
        raise RuntimeError(f"QEMU {pid} has no memory-backend-memfd memfd")
    return open(best[1], "rb")


def compare_ram(src_pid, dst_pid):
    page = 4096
    pages = differ = 0
    first = None
    with guest_ram(src_pid) as a, guest_ram(dst_pid) as b:
        while True:
            x, y = a.read(1 << 20), b.read(1 << 20)
            if not x and not y:
                break
            if x != y:
                for i in range(0, max(len(x), len(y)), page):
                    if x[i:i + page] != y[i:i + page]:
                        differ += 1
                        if first is None:
                            first = pages + i // page
            pages += max(len(x), len(y)) // page
    return pages, differ, first


def write_signal(image, offset):
    """Writes the marker the guest's testbed.latefill job polls (O_DIRECT reads through the back-end, which serves
    this file: the write reaches the guest through the device)."""
    fd = os.open(image, os.O_WRONLY)
    try:
        os.pwrite(fd, b"LATEFILL".ljust(4096, b"\0"), offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def console_has(log, text):
    try:
        with open(log, "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def main():
    args = sys.argv[1:]
    dest_qmp = None
    hold = 0.0
    signal = await_ = None
    for opt in ("--compare", "--hold", "--signal", "--await"):
        if opt in args:
            i = args.index(opt)
            if i + 1 >= len(args):
                sys.exit(__doc__)
            if opt == "--compare":
                dest_qmp = args[i + 1]
            elif opt == "--hold":
                hold = float(args[i + 1])
            elif opt == "--signal":
                image, _, offset = args[i + 1].rpartition(":")
                signal = (image, int(offset))
            else:
                log, _, text = args[i + 1].partition(":")
                await_ = (log, text)
            del args[i:i + 2]
    if len(args) not in (3, 4) or (signal is None) != (await_ is None) or (signal is not None and hold <= 0):
        sys.exit(__doc__)
    path, uri, timeout = args[0], args[1], float(args[2])
    bandwidth = int(args[3]) if len(args) == 4 else 32 << 20
    qmp = Qmp(path, 30)
    # With a hold, a 1 ms downtime limit until it ends: a quiet guest's migration could otherwise finish right at the
    # end of the first pass, between two polls, before the hold began.
    qmp.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth, "downtime-limit": 1 if hold > 0 else 1000})
    qmp.cmd("migrate", uri=uri)
    deadline = time.monotonic() + timeout
    info = {}
    held_since = None
    while time.monotonic() < deadline:
        info = qmp.cmd("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            break
        if hold > 0:
            if held_since is None and info.get("ram", {}).get("dirty-sync-count", 0) >= 2:
                held_since = time.monotonic()   # the first pass is done: too slow to converge for a while
                qmp.cmd("migrate-set-parameters", **{"max-bandwidth": max(bandwidth // 32, 1 << 20)})
                if signal is not None:
                    write_signal(*signal)
            elif held_since is not None and time.monotonic() - held_since >= hold:
                seen = await_ is None or console_has(*await_)
                if seen or time.monotonic() - held_since >= 60:
                    if await_ is not None:
                        print(f"HOLD signal=written await={'seen' if seen else 'timeout'} "
                              f"after-ms={int((time.monotonic() - held_since) * 1000)}", flush=True)
                    qmp.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth, "downtime-limit": 1000})
                    hold = 0
        time.sleep(0.1)
    ram = info.get("ram", {})
    status = info.get("status", "none")
    print(f"MIGRATION status={status} total-ms={info.get('total-time', '?')} downtime-ms={info.get('downtime', '?')} "
          f"transferred={ram.get('transferred', '?')} dirty-syncs={ram.get('dirty-sync-count', '?')}"
          + (f" error={info['error-desc']!r}" if "error-desc" in info else ""), flush=True)
    if status not in ("completed", "failed", "cancelled"):
        qmp.cmd("migrate_cancel")
    if dest_qmp is not None and status == "completed":
        dest = Qmp(dest_qmp, 30)
        # The source's "completed" can come before the destination has loaded the last state: wait for it to pause.
        while time.monotonic() < deadline and dest.cmd("query-status").get("status") != "paused":
            time.sleep(0.05)
        try:
            pages, differ, first = compare_ram(qemu_pid(path), qemu_pid(dest_qmp))
            print(f"MEMCOMPARE pages={pages} differ={differ}" + (f" first=0x{first * 4096:x}" if first is not None else ""), flush=True)
        except (OSError, RuntimeError) as e:
            print(f"MEMCOMPARE error={e!r}", flush=True)
        dest.cmd("cont")
    # The source quits either way: after a completed migration its guest runs on the destination, after a failed one
    # the test has failed and nothing should keep running.
    try:
        qmp.cmd("quit")
    except (EOFError, OSError):
        pass
    return 0 if status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
