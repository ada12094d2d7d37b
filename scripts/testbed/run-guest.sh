#!/usr/bin/env bash
# Boots the testbed guest under QEMU (TCG) and reports its TESTBED-RESULT line.
#
#   bash scripts/testbed/run-guest.sh [options] [-- EXTRA_QEMU_ARGS...]
#
# Options:
#   --initrd FILE    initramfs (default .testbed/initramfs-blk.cpio.gz, built from
#                    guest-blk-test.sh if missing or older than the scripts)
#   --kernel FILE    kernel (default .testbed/kernel/current/vmlinuz)
#   --append STR     extra kernel command line, e.g. "testbed.mode=ro"
#   --log FILE       serial console log (default .testbed/logs/guest-<time>.log)
#   --timeout SEC    hard limit for the whole QEMU run (default 120)
#   --quiet          do not echo the console to stdout (the log is still written)
#   --accel OPTS     QEMU -accel value (default tcg; the migrate cases use tcg,thread=single)
#
# Everything after "--" is appended to the QEMU command line verbatim, e.g.
#   -- -chardev socket,id=c0,path=/tmp/vhost.sock -device vhost-user-blk-pci,chardev=c0,disable-legacy=on
#
# Exit status: 0 if the guest printed "TESTBED-RESULT: PASS"; 1 if it printed
# "TESTBED-RESULT: FAIL ..."; 2 if no result line (QEMU failed, crashed, or timed out).
set -euo pipefail
source "$(dirname "$0")/common.sh"
exec </dev/null

kernel="$TESTBED_KERNEL_DIR/vmlinuz"
initrd=""
append=""
log=""
tmo=120
quiet=0
accel=tcg
while [ $# -gt 0 ]; do
  case "$1" in
    --initrd) initrd="$2"; shift 2 ;;
    --kernel) kernel="$2"; shift 2 ;;
    --append) append="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --timeout) tmo="$2"; shift 2 ;;
    --quiet) quiet=1; shift ;;
    --accel) accel="$2"; shift 2 ;;
    --) shift; break ;;
    *) tb_die "unknown option $1 (extra QEMU args go after --)" ;;
  esac
done
[ -f "$kernel" ] || tb_die "no kernel $kernel; run scripts/testbed/setup.sh"

if [ -z "$initrd" ]; then
  initrd="$TESTBED_DEFAULT_INITRD"
  stale=0
  [ -f "$initrd" ] || stale=1
  for s in guest-blk-test.sh init.sh pattern.sh build-initramfs.sh; do
    [ "$stale" -eq 1 ] || [ "$TESTBED_SCRIPTS/$s" -nt "$initrd" ] && stale=1
  done
  [ "$stale" -eq 0 ] || bash "$TESTBED_SCRIPTS/build-initramfs.sh" "$TESTBED_SCRIPTS/guest-blk-test.sh" "$initrd"
fi
[ -f "$initrd" ] || tb_die "no initramfs $initrd"

if [ -z "$log" ]; then
  mkdir -p "$TESTBED_DIR/logs"
  log="$TESTBED_DIR/logs/guest-$(date +%Y%m%d-%H%M%S)-$$.log"
fi
mkdir -p "$(dirname "$log")"

qemu=(qemu-system-x86_64
  -M q35 -accel "$accel" -m 512
  -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem
  -nographic -no-reboot
  -kernel "$kernel" -initrd "$initrd"
  -append "console=ttyS0 panic=-1 loglevel=4 $append"
  "$@")
{ printf '[testbed] qemu:'; printf ' %q' "${qemu[@]}"; echo; } >&2

t0=$(tb_now_ms)
set +e
if [ "$quiet" -eq 1 ]; then
  timeout -k 5 "$tmo" "${qemu[@]}" >"$log" 2>&1
  qrc=$?
else
  timeout -k 5 "$tmo" "${qemu[@]}" 2>&1 | tee "$log"
  qrc=${PIPESTATUS[0]}
fi
set -e
t1=$(tb_now_ms)
secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')"

result="$(tr -d '\r' <"$log" | grep -a -m1 '^TESTBED-RESULT: ' || true)"
case "$result" in
  "TESTBED-RESULT: PASS")
    tb_log "PASS in ${secs}s (log $log)"; exit 0 ;;
  "TESTBED-RESULT: FAIL"*)
    tb_log "FAIL in ${secs}s: ${result#TESTBED-RESULT: FAIL} (log $log)"; exit 1 ;;
  *)
    if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
      tb_log "NO RESULT: QEMU killed after ${tmo}s timeout (log $log)"
    else
      tb_log "NO RESULT: QEMU exited with $qrc after ${secs}s (log $log)"
      [ "$quiet" -eq 0 ] || tail -n 20 "$log" >&2
    fi
    exit 2 ;;
esac
