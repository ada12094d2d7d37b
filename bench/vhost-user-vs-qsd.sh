#!/usr/bin/env bash
# Boots the same guest read/write workload against the VirtioSharp vhost-user-blk back-end and against
# qemu-storage-daemon's vhost-user-blk export, RUNS times each, and prints the median wall times and their ratio.
# A benchmark, not a test: it prints figures and never fails on speed.
#
#   bash bench/vhost-user-vs-qsd.sh [RUNS]        (default 3)
#
# Wall time covers guest boot + the guest workload (testbed.mode=parallel, 2 jobs, 2 rounds of 8 MiB each, half of
# them O_DIRECT) under TCG; the back-end is already listening when the clock starts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/testbed/common.sh
exec </dev/null
runs="${1:-3}"
bash scripts/testbed/setup.sh >/dev/null
dotnet build src/VirtioSharp.Cli -c Release -nologo -v q >/dev/null
dll=src/VirtioSharp.Cli/bin/Release/net10.0/virtio-sharp.dll
work="$(mktemp -d /tmp/vsbench.XXXXXX)"
pid=""
trap 'tb_stop pid 5; rm -rf "$work"' EXIT
append="testbed.mode=parallel testbed.mib=8 testbed.jobs=2 testbed.rounds=2"

one() {  # one BACKEND RUN -> prints seconds
  local b="$1" i="$2" img="$work/$1-$2.img" sock="$work/$1-$2.sock" log="$work/$1-$2.log" t0 t1
  truncate -s 64M "$img"
  if [ "$b" = virtio-sharp ]; then
    tb_start pid "$log" dotnet "$dll" vhost-user-blk --socket-path "$sock" --blk-file "$img" --num-queues 2 --log-level Warning
  else
    tb_start pid "$log" qemu-storage-daemon --blockdev "driver=file,node-name=file0,filename=$img" \
      --blockdev driver=raw,node-name=disk0,file=file0 \
      --export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$sock,writable=on,num-queues=2"
  fi
  tb_wait_socket "$sock" "$pid" "$log"
  t0=$(tb_now_ms)
  bash scripts/testbed/run-guest.sh --quiet --timeout 300 --log "$work/$b-$i.guest" --append "$append" -- -smp 2 \
    -chardev "socket,id=c0,path=$sock" -device "vhost-user-blk-pci,chardev=c0,disable-legacy=on,num-queues=2" >/dev/null \
    || { tb_log "$b run $i: guest failed (log $work/$b-$i.guest)"; tb_stop pid 5; exit 1; }
  t1=$(tb_now_ms)
  tb_stop pid 5
  tb_secs "$t0" "$t1"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
declare -A times
for i in $(seq "$runs"); do
  for b in virtio-sharp qemu-storage-daemon; do
    s="$(one "$b" "$i")"
    times[$b]="${times[$b]:-} $s"
    echo "run $i $b: ${s}s"
  done
done
vs="$(echo "${times[virtio-sharp]}" | tr ' ' '\n' | grep . | median)"
qs="$(echo "${times[qemu-storage-daemon]}" | tr ' ' '\n' | grep . | median)"
echo "median virtio-sharp ${vs}s, qemu-storage-daemon ${qs}s, ratio (virtio-sharp / qsd) $(awk -v a="$vs" -v b="$qs" 'BEGIN { printf "%.2f", a / b }')"
