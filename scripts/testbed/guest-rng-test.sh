#!/bin/sh
# Guest side of every virtio-rng interop case (busybox sh; runs as /test.sh from the
# testbed initramfs). Exit 0 = pass; on failure the reason is written to
# /tmp/testbed-reason and the exit status is non-zero.
#
# Checks, in order: rng_core and virtio_rng are present (insmods them if init.sh did not),
# /dev/hwrng exists and the hwrng core's current source is virtio_rng.N, the core's
# quality is testbed.quality if one is given, then reads testbed.rngbytes bytes from
# /dev/hwrng with one dd (64 KiB blocks, timed), counts the bytes that really arrived, and
# checks the data is not constant: every 64 KiB chunk has a different md5, no chunk is all
# zero, and gzip cannot compress the whole (random data does not shrink).
#
# The kernel's own reader: Linux 6.1 runs the hwrng fill thread ("hwrng") whatever the
# quality. rng_core.default_quality is already 0 in Debian 6.1 and does not apply anyway,
# because virtio_rng sets its own quality (1000); writing 0 to rng_quality stops the entropy
# credit but not the thread. Measured against QEMU's virtio-rng with a byte-counting source
# (interop.sh rng-qemu): the thread reads one 64-byte block at registration and then one per
# random.c reseed interval (about uptime/2 early on, at most 60 s), the same with quality
# 1000 or 0, so over a whole guest run the device serves 320-512 bytes more than dd reads.
# The host allows for that (RNG_SLACK in interop.sh); this script reports whether the
# thread exists.
#
# Parameters (kernel command line, run-guest.sh --append "..."):
#   testbed.rngbytes=N   bytes to read, a multiple of 65536 and at least 2 chunks (default 1048576)
#   testbed.quality=Q    fail unless /sys/module/rng_core/parameters/{default,current}_quality
#                        are Q (default: any, not checked)
#
# Machine-readable lines for the host (interop.sh compares them with the back-end's counters):
#   TESTBED-RNG current=virtio_rng.0 available="virtio_rng.0" default_quality=0 current_quality=1000 hwrng_thread=1 features=0110...
#   TESTBED-RNG-BYTES: N      bytes dd read from /dev/hwrng
#   TESTBED-RNG-MS: N         how long that dd took (guest /proc/uptime, 10 ms resolution)
param() {
  for w in $(cat /proc/cmdline); do
    case "$w" in "testbed.$1="*) echo "${w#*=}"; return ;; esac
  done
  echo "$2"
}
info() { echo "testbed-rng: $*"; }
fail() { echo "testbed-rng: FAIL: $*"; echo "$*" >/tmp/testbed-reason; exit 1; }
uptime_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }

BYTES=$(param rngbytes 1048576)
QUAL=$(param quality any)
CHUNK=65536
NCHUNK=$((BYTES / CHUNK))
if [ $((NCHUNK * CHUNK)) -ne "$BYTES" ] || [ "$NCHUNK" -lt 2 ]; then
  fail "testbed.rngbytes=$BYTES is not a multiple of $CHUNK with at least 2 chunks"
fi

# init.sh insmods everything in modules.order; a kernel with rng_core as a module gets it
# there too. Load whatever is still missing (and is a module) here.
for m in rng_core virtio_rng; do
  [ -d "/sys/module/$m" ] && continue
  if [ -f "/lib/modules/$m.ko" ]; then
    insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
  else
    fail "module $m is neither loaded, built in, nor in the initramfs"
  fi
done

# The device: /dev/hwrng plus the core's choice of source (up to 10 s for the probe).
HW=/sys/class/misc/hw_random
n=0
while :; do
  cur=$(cat "$HW/rng_current" 2>/dev/null)
  if [ -c /dev/hwrng ]; then
    case "$cur" in virtio_rng*) break ;; esac
  fi
  n=$((n + 1))
  [ "$n" -gt 100 ] && fail "no virtio hwrng after 10s: /dev/hwrng $([ -c /dev/hwrng ] && echo exists || echo missing), rng_current '${cur:-?}', rng_available '$(cat "$HW/rng_available" 2>/dev/null)'"
  usleep 100000
done
avail=$(tr -s ' \n' ' ' <"$HW/rng_available" 2>/dev/null | sed 's/ *$//')
dq=$(cat /sys/module/rng_core/parameters/default_quality 2>/dev/null)
cq=$(cat /sys/module/rng_core/parameters/current_quality 2>/dev/null)
feat=$(cat /sys/bus/virtio/drivers/virtio_rng/virtio*/features 2>/dev/null | head -n1)
thread=0
for c in /proc/[0-9]*/comm; do
  [ "$(cat "$c" 2>/dev/null)" = hwrng ] && thread=1 && break
done
echo "TESTBED-RNG current=$cur available=\"$avail\" default_quality=${dq:-?} current_quality=${cq:-?} hwrng_thread=$thread features=${feat:-?}"
if [ "$QUAL" != any ]; then
  [ "$dq" = "$QUAL" ] || fail "rng_core default_quality is '${dq:-?}', expected $QUAL"
  [ "$cq" = "$QUAL" ] || fail "rng_core current_quality is '${cq:-?}', expected $QUAL"
fi

# The read: one dd, 64 KiB blocks (fullblock: a short read from the device is topped up,
# not counted as a block). The bytes counted are the file's size, not dd's arithmetic.
t0=$(uptime_ms)
dd if=/dev/hwrng of=/tmp/rng.bin bs=$CHUNK count="$NCHUNK" iflag=fullblock 2>/tmp/dd.err
rc=$?
t1=$(uptime_ms)
got=$(wc -c </tmp/rng.bin)
echo "TESTBED-RNG-BYTES: $got"
echo "TESTBED-RNG-MS: $((t1 - t0))"
[ "$rc" -eq 0 ] || fail "dd from /dev/hwrng exited with $rc after $got bytes: $(grep -v records /tmp/dd.err | tail -n1)"
[ "$got" -eq "$BYTES" ] || fail "read $got bytes from /dev/hwrng, expected $BYTES"
info "read $got bytes from /dev/hwrng in $((t1 - t0)) ms"

# Not constant: distinct chunks, none all-zero, incompressible as a whole.
zero=$(dd if=/dev/zero bs=$CHUNK count=1 2>/dev/null | md5sum | cut -d' ' -f1)
: >/tmp/md5s
k=0
while [ "$k" -lt "$NCHUNK" ]; do
  s=$(dd if=/tmp/rng.bin bs=$CHUNK skip="$k" count=1 2>/dev/null | md5sum | cut -d' ' -f1)
  [ "$s" != "$zero" ] || fail "chunk $k (64 KiB at $((k * CHUNK))) is all zero"
  echo "$s" >>/tmp/md5s
  k=$((k + 1))
done
distinct=$(sort -u /tmp/md5s | wc -l)
[ "$distinct" -eq "$NCHUNK" ] || fail "only $distinct distinct md5s among $NCHUNK chunks of 64 KiB"
gz=$(gzip -c /tmp/rng.bin | wc -c)
[ $((gz * 100)) -ge $((got * 99)) ] || fail "the data compresses: gzip made $got bytes into $gz (not random)"
info "$NCHUNK chunks of 64 KiB all differ, none is zero; gzip: $got -> $gz bytes"
rm -f /tmp/rng.bin
exit 0
