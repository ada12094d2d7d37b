#!/usr/bin/env bash
# Back-end-bound block benchmark: the VirtioSharp vhost-user-blk back-end against qemu-storage-daemon's
# vhost-user-blk export, both driven by bench/VirtioSharp.BlkLoad (a small C# vhost-user front-end that busy-polls
# the rings), on a tmpfs image (page cache, cache=writeback) and on an O_DIRECT file on the disk (cache=none).
# A benchmark, not a test: it prints figures and never fails on speed (only on a broken run).
#
#   bash bench/blk-vs-qsd.sh [--quick] [--pairs N] [--runtime S] [--warmup S] [--aio io_uring|threads]
#                            [--ours-aio io_uring|threads|sync] [--ours-args "ARGS"] [--locations shm,disk] [--out DIR]
#
# Each row runs ours, qsd, ours, qsd ... (--pairs pairs, default 3; --quick: 1 pair, fewer rows, 2 s runs) against
# back-ends that stay up for all rows with the same queue count, and reports the median per back-end and ours/qsd.
# QD is per queue; with 2 queues the generator runs one driver thread per queue. CPU µs/req is the back-end
# process's utime+stime (all threads) over the measured seconds divided by the requests completed in them.
# Full run: about 15 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/testbed/common.sh
exec </dev/null

pairs=3 runtime=5 warmup=1 aio=io_uring ours_aio="" ours_args="" locations=shm,disk quick=0 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 pairs=1 runtime=2 ;;
    --pairs) pairs="$2"; shift ;;
    --runtime) runtime="$2"; shift ;;
    --warmup) warmup="$2"; shift ;;
    --aio) aio="$2"; shift ;;
    --ours-aio) ours_aio="$2"; shift ;;   # ours only (qsd has no "sync"); default: --aio
    --ours-args) ours_args="$2"; shift ;;   # more options for ours, e.g. "--poll-us 32" (qsd's iothread polls 32 µs by default)
    --locations) locations="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--pairs N] [--runtime S] [--warmup S] [--aio io_uring|threads] [--ours-aio io_uring|threads|sync] [--ours-args "ARGS"] [--locations shm,disk] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

ours_aio="${ours_aio:-$aio}"
command -v qemu-storage-daemon >/dev/null || tb_die "qemu-storage-daemon is not installed (bash scripts/testbed/setup.sh)"
command -v fio >/dev/null || tb_die "fio is not installed"
tb_log "building (Release)"
dotnet build src/VirtioSharp.Cli -c Release -nologo -v q >/dev/null
dotnet build bench/VirtioSharp.BlkLoad -c Release -nologo -v q >/dev/null
cli=src/VirtioSharp.Cli/bin/Release/net10.0/virtio-sharp.dll
load=bench/VirtioSharp.BlkLoad/bin/Release/net10.0/VirtioSharp.BlkLoad.dll

work="$(mktemp -d /tmp/blkbench.XXXXXX)"
results="${out:-$work}/results.txt"
mkdir -p "$(dirname "$results")"
: >"$results"
ours="" qsd="" images=()
cleanup() { tb_stop ours 5; tb_stop qsd 5; rm -f "${images[@]}"; rm -rf "$work"; }
trap cleanup EXIT

# Rows: NAME PATTERN BS QD QUEUES. Grouped by queue count: each group gets its own pair of back-ends.
rows_q1=("randread-4k-qd1 randread 4096 1 1" "randread-4k-qd32 randread 4096 32 1" "randwrite-4k-qd1 randwrite 4096 1 1"
         "randwrite-4k-qd32 randwrite 4096 32 1" "seqread-128k-qd32 seqread 131072 32 1")
rows_q2=("randread-4k-qd1-2q randread 4096 1 2" "randread-4k-qd32-2q randread 4096 32 2" "randwrite-4k-qd1-2q randwrite 4096 1 2"
         "randwrite-4k-qd32-2q randwrite 4096 32 2")
if [ "$quick" = 1 ]; then
  rows_q1=("randread-4k-qd1 randread 4096 1 1" "randread-4k-qd32 randread 4096 32 1" "randwrite-4k-qd32 randwrite 4096 32 1"
           "seqread-128k-qd32 seqread 131072 32 1")
  rows_q2=("randread-4k-qd32-2q randread 4096 32 2")
fi

make_image() {  # make_image PATH: 1 GiB of written (not sparse) blocks, so reads hit real data
  local img="$1"
  images+=("$img")
  rm -f "$img"
  dd if=/dev/zero of="$img" bs=1M count=1024 oflag=direct conv=fsync status=none 2>/dev/null \
    || dd if=/dev/zero of="$img" bs=1M count=1024 conv=fsync status=none
  # Read it once, so whatever caches sit below (a virtual disk's host) start the same for every run.
  dd if="$img" of=/dev/null bs=1M iflag=direct status=none 2>/dev/null || true
}

start_backends() {  # start_backends LOC IMG CACHE QUEUES
  local loc="$1" img="$2" cache="$3" nq="$4" direct
  [ "$cache" = none ] && direct=on || direct=off
  local so="$work/ours-$loc-$nq.sock" sq="$work/qsd-$loc-$nq.sock"
  tb_start ours "$work/ours-$loc-$nq.log" dotnet "$cli" vhost-user-blk --socket-path "$so" --blk-file "$img" \
    --num-queues "$nq" --aio "$ours_aio" --cache "$cache" --log-level Warning $ours_args
  tb_start qsd "$work/qsd-$loc-$nq.log" qemu-storage-daemon \
    --blockdev "driver=file,node-name=f,filename=$img,cache.direct=$direct,aio=$aio" \
    --blockdev driver=raw,node-name=d,file=f --object iothread,id=io0 \
    --export "type=vhost-user-blk,id=e0,node-name=d,addr.type=unix,addr.path=$sq,writable=on,num-queues=$nq,iothread=io0"
  tb_wait_socket "$so" "$ours" "$work/ours-$loc-$nq.log"
  tb_wait_socket "$sq" "$qsd" "$work/qsd-$loc-$nq.log"
  sock_ours="$so" sock_qsd="$sq"
  # One unmeasured run each, so JIT tiering and first-touch costs are behind both before the first measured row.
  for b in ours qsd; do
    local s; [ $b = ours ] && s="$so" || s="$sq"
    timeout 60 dotnet "$load" --socket "$s" --pattern randread --qd 32 --queues "$nq" --runtime 2 --warmup 1 >/dev/null
    timeout 60 dotnet "$load" --socket "$s" --pattern randwrite --qd 8 --queues "$nq" --runtime 1 --warmup 0 >/dev/null
  done
}

one() {  # one LOC ROW BACKEND PAIR PATTERN BS QD QUEUES
  local loc="$1" row="$2" b="$3" p="$4" pat="$5" bs="$6" qd="$7" nq="$8" s pid line
  if [ "$b" = ours ]; then s="$sock_ours" pid="$ours"; else s="$sock_qsd" pid="$qsd"; fi
  if ! line="$(timeout 120 dotnet "$load" --socket "$s" --pattern "$pat" --bs "$bs" --qd "$qd" --queues "$nq" \
      --runtime "$runtime" --warmup "$warmup" --backend-pid "$pid" --label "$loc/$row/$b/$p" | grep '^RESULT')"; then
    tb_die "$loc $row $b pair $p: the load generator failed (back-end logs in $work)"
  fi
  echo "$line" >>"$results"
  echo "$line" | awk -v b="$b" -v p="$p" -v loc="$loc" -v row="$row" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    printf "  %-5s %-20s %-4s pair %s: %9s IOPS %8s MB/s  p50 %7s us  p99 %8s us  cpu %6s us/req\n", loc, row, b, p, v["iops"], v["mbps"], v["p50_us"], v["p99_us"], v["backend_cpu_us"] }' >&2
}

fio_row() {  # fio_row LOC ROW PATTERN BS QD QUEUES IMG: what the disk itself does, same file, same shape
  local loc="$1" row="$2" pat="$3" bs="$4" qd="$5" nq="$6" img="$7" rw t
  case "$pat" in randread) rw=randread ;; randwrite) rw=randwrite ;; seqread) rw=read ;; esac
  t="$(fio --name=disk --filename="$img" --direct=1 --ioengine=io_uring --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs="$nq" \
        --offset_increment=$((1024 / nq))m --size=$((1024 / nq))m --time_based --runtime="$runtime" --ramp_time="$warmup" \
        --group_reporting --output-format=terse)"
  echo "$t" | awk -F';' -v label="$loc/$row/fio/1" -v rt="$runtime" -v bs="$bs" -v w="$([ "$pat" = randwrite ] && echo 1 || echo 0)" '{
    io = w ? $49 : $8; lo = w ? 59 : 18
    p50 = p99 = "nan"
    for (i = lo; i < lo + 20; i++) { split($i, kv, "%="); if (kv[1] == "50.000000") p50 = kv[2]; if (kv[1] == "99.000000") p99 = kv[2] }
    cpu = ($88 + $89) / 100 * rt
    printf "RESULT label=%s iops=%d mbps=%.1f p50_us=%s p99_us=%s backend_cpu_us=%.2f\n", label, io, io * bs / 1e6, p50, p99, (io > 0 ? cpu * 1e6 / (io * rt) : 0) }' \
    | tee -a "$results" >&2
}

run_location() {  # run_location LOC IMG CACHE
  local loc="$1" img="$2" cache="$3" nq r name pat bs qd q p
  for nq in 1 2; do
    local rows=()
    if [ "$nq" = 1 ]; then rows=("${rows_q1[@]}"); else rows=("${rows_q2[@]}"); fi
    [ "${#rows[@]}" -gt 0 ] || continue
    tb_log "$loc: back-ends with $nq queue(s), cache=$cache, aio=$aio (ours: $ours_aio)"
    start_backends "$loc" "$img" "$cache" "$nq"
    for r in "${rows[@]}"; do
      read -r name pat bs qd q <<<"$r"
      for p in $(seq "$pairs"); do
        for b in ours qsd; do one "$loc" "$name" "$b" "$p" "$pat" "$bs" "$qd" "$q"; done
      done
      # The disk's own figure for the O_DIRECT QD32 rows (no back-end in between).
      if [ "$cache" = none ] && [ "$qd" -ge 32 ]; then fio_row "$loc" "$name" "$pat" "$bs" "$qd" "$q" "$img"; fi
    done
    tb_stop ours 5; tb_stop qsd 5
  done
}

t0=$(tb_now_ms)
IFS=, read -r -a locs <<<"$locations"
for loc in "${locs[@]}"; do
  case "$loc" in
    # tmpfs is the page cache itself: serve it through the page cache (kernels >= 6.6 accept O_DIRECT on tmpfs,
    # but that is still a memory copy, not a device).
    shm) img=/dev/shm/vs-blkbench.img; make_image "$img"; run_location shm "$img" writeback ;;
    disk) img=/var/tmp/vs-blkbench.img; make_image "$img"; run_location disk "$img" none ;;
    *) tb_die "unknown location $loc (shm, disk)" ;;
  esac
done

# Medians per row and back-end, ratio ours/qsd (IOPS; MB/s gives the same ratio at a fixed block size).
echo
echo "blk-vs-qsd: pairs=$pairs runtime=${runtime}s warmup=${warmup}s aio=$aio ours-aio=$ours_aio ours-args='$ours_args', $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ), $(( ($(tb_now_ms) - t0) / 1000 )) s"
awk '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  /^RESULT/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    split(v["label"], l, "/"); key = l[1] SUBSEP l[2]; b = l[3]
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    for (m in v) if (m != "label") val[key, b, m] = val[key, b, m] " " v[m]
  }
  END {
    last = ""
    for (k = 1; k <= n; k++) {
      split(order[k], kk, SUBSEP)
      if (kk[1] != last) {
        last = kk[1]
        printf "\n%s\n| row | ours IOPS | qsd IOPS | ours/qsd | ours MB/s | qsd MB/s | p99 ours (us) | p99 qsd (us) | CPU ours (us/req) | CPU qsd (us/req) | fio IOPS | fio p99 (us) |\n", last
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      }
      key = order[k]
      oi = median(val[key, "ours", "iops"]); qi = median(val[key, "qsd", "iops"])
      fi = ((key SUBSEP "fio" SUBSEP "iops") in val) ? median(val[key, "fio", "iops"]) : "-"
      fp = ((key SUBSEP "fio" SUBSEP "p99_us") in val) ? median(val[key, "fio", "p99_us"]) : "-"
      printf "| %s | %.0f | %.0f | %.2f | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %s | %s |\n", kk[2], oi, qi, (qi > 0 ? oi / qi : 0),
        median(val[key, "ours", "mbps"]), median(val[key, "qsd", "mbps"]), median(val[key, "ours", "p99_us"]), median(val[key, "qsd", "p99_us"]),
        median(val[key, "ours", "backend_cpu_us"]), median(val[key, "qsd", "backend_cpu_us"]), fi, fp
    }
  }' "$results"
[ -n "$out" ] && echo "raw results: $results"
exit 0
