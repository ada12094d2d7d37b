#!/usr/bin/env bash
# Dirty-logging overhead on the block path: IOPS with VHOST_F_LOG_ALL off and on, against one vhost-user-blk
# back-end on a tmpfs image, driven by bench/VirtioSharp.BlkLoad (--dirty-log shares a log and negotiates LOG_ALL
# as QEMU does while migrating). Off and on runs alternate (--rounds pairs per pattern), so drifting machine load
# hits both settings alike; the medians and on/off ratio are printed. A benchmark: it never fails on speed.
#
#   bash bench/dirty-log-iops.sh [--rounds N] [--runtime S] [--qd N] [--bs BYTES] [--patterns randread,randwrite]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/testbed/common.sh
exec </dev/null

rounds=5 runtime=4 qd=16 bs=4096 patterns=randread,randwrite
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift ;;
    --runtime) runtime="$2"; shift ;;
    --qd) qd="$2"; shift ;;
    --bs) bs="$2"; shift ;;
    --patterns) patterns="$2"; shift ;;
    *) echo "usage: $0 [--rounds N] [--runtime S] [--qd N] [--bs BYTES] [--patterns randread,randwrite]" >&2; exit 2 ;;
  esac
  shift
done

tb_log "building (Release)"
dotnet build src/VirtioSharp.Cli -c Release -nologo -v q >/dev/null
dotnet build bench/VirtioSharp.BlkLoad -c Release -nologo -v q >/dev/null
cli=src/VirtioSharp.Cli/bin/Release/net10.0/virtio-sharp.dll
load=bench/VirtioSharp.BlkLoad/bin/Release/net10.0/VirtioSharp.BlkLoad.dll

work="$(mktemp -d /dev/shm/dirtylog.XXXXXX)"
backend=""
cleanup() { tb_stop backend 5; rm -rf "$work"; }
trap cleanup EXIT
head -c $((256 << 20)) /dev/urandom >"$work/img"
dotnet "$cli" vhost-user-blk --socket-path "$work/s" --blk-file "$work/img" >"$work/backend.log" 2>&1 &
backend=$!
for _ in $(seq 100); do [ -S "$work/s" ] && break; sleep 0.1; done
[ -S "$work/s" ] || tb_die "the back-end did not create its socket ($work/backend.log)"

iops() { # pattern [--dirty-log] -> IOPS
  dotnet "$load" --socket "$work/s" --pattern "$1" --bs "$bs" --qd "$qd" --runtime "$runtime" --warmup 1 \
    --backend-pid "$backend" ${2:+"$2"} | sed -n 's/.*iops=\([0-9.]*\).*/\1/p' | head -n1
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "# bs=$bs qd=$qd runtime=${runtime}s rounds=$rounds load=$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %-40s %-40s %s\n' pattern "LOG_ALL off (IOPS per run)" "LOG_ALL on (IOPS per run)" "on/off (medians)"
for p in ${patterns//,/ }; do
  off="" on=""
  for _ in $(seq "$rounds"); do
    a="$(iops "$p")"; b="$(iops "$p" --dirty-log)"
    [ -n "$a" ] && [ -n "$b" ] || tb_die "BlkLoad printed no iops= figure"
    off="$off $a"; on="$on $b"
  done
  moff="$(echo "$off" | median)"; mon="$(echo "$on" | median)"
  printf '%-10s %-40s %-40s %s\n' "$p" "$off" "$on" "$(awk -v a="$moff" -v b="$mon" 'BEGIN {printf "%.0f / %.0f = %.2f", b, a, b / a}')"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
