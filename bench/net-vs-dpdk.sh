#!/usr/bin/env bash
# Packet-rate benchmark: the VirtioSharp vhost-user-net back-end (--loopback: every frame comes back) against DPDK
# 22.11's vhost PMD in testpmd io forwarding (its loopback), both driven by the same DPDK virtio-user front-end
# (dpdk-testpmd --vdev net_virtio_user0). A benchmark, not a test: it prints figures and fails only on a broken run.
#
#   bash bench/net-vs-dpdk.sh [--rounds N] [--runtime S] [--warmup S] [--sizes "64 1500"] [--modes "io txonly"]
#                             [--ours-args "ARGS"] [--out DIR]
#
# Modes (1 queue pair):
#   io      the front-end sends 4 bursts of 32 frames (testpmd `start tx_first 4`), then forwards what comes back:
#           128 frames circle front-end → back-end → front-end; Mpps = frames the front-end receives per second.
#   txonly  the front-end sends as fast as it can and never reads its receive queue; Mpps = frames the back-end
#           takes from the transmit ring per second (what it tries to send back is dropped: the receive ring is full).
# Cores: the back-end runs on CPU 0 (ours: the whole process under taskset; DPDK: its forwarding lcore), the
# front-end's forwarding lcore on CPU 1. Each round runs ours then DPDK, the next DPDK then ours (alternated); the
# rate is testpmd's "Throughput (since last show)" over --runtime seconds after --warmup seconds of traffic.
# DPDK here: no hugepages (--no-huge -m 1024), --single-file-segments for virtio-user (one memfd for the memory
# table), unique --file-prefix per process, two lcores each (main + forwarding). Our back-end needs
# --allow-unsealed-memory: DPDK's memory is not a sealed memfd.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/testbed/common.sh
exec </dev/null

rounds=3 runtime=10 warmup=2 sizes="64 1500" modes="io txonly" ours_args="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift ;;
    --runtime) runtime="$2"; shift ;;
    --warmup) warmup="$2"; shift ;;
    --sizes) sizes="$2"; shift ;;
    --modes) modes="$2"; shift ;;
    --ours-args) ours_args="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "usage: $0 [--rounds N] [--runtime S] [--warmup S] [--sizes \"64 1500\"] [--modes \"io txonly\"] [--ours-args \"ARGS\"] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

command -v dpdk-testpmd >/dev/null || tb_die "dpdk-testpmd is not installed (bash scripts/testbed/setup.sh installs dpdk)"
[ "$(nproc)" -ge 2 ] || tb_die "needs 2 CPUs (back-end on CPU 0, front-end on CPU 1)"
tb_log "building (Release)"
dotnet build src/VirtioSharp.Cli -c Release -nologo -v q >/dev/null
cli=src/VirtioSharp.Cli/bin/Release/net10.0/virtio-sharp.dll

work="$(mktemp -d /tmp/netbench.XXXXXX)"
results="${out:-$work}/results.txt"
mkdir -p "$(dirname "$results")"
: >"$results"
backend=""
cleanup() { tb_stop backend 5; rm -rf "$work"; }
trap cleanup EXIT
tag="nb$$"

start_backend() {  # start_backend ours|dpdk SOCK LOG
  local kind="$1" sock="$2" log="$3"
  rm -f "$sock"
  if [ "$kind" = ours ]; then
    tb_start backend "$log" taskset -c 0 dotnet "$cli" vhost-user-net --socket-path "$sock" --loopback \
      --allow-unsealed-memory $ours_args
  else
    tb_start backend "$log" dpdk-testpmd -l 0,1 --main-lcore 1 --no-huge -m 1024 --no-pci --file-prefix="${tag}b" \
      --vdev "net_vhost0,iface=$sock,queues=1" -- --total-num-mbufs=16384 --forward-mode=io --auto-start --stats-period 3600
  fi
  tb_wait_socket "$sock" "$backend" "$log" 30
}

# run_frontend MODE SIZE SOCK LOG: prints "RX_PPS TX_PPS" over the measured window.
run_frontend() {
  local mode="$1" size="$2" sock="$3" log="$4" start="start"
  [ "$mode" = io ] && start="start tx_first 4"
  { sleep 2; echo "$start"; sleep "$warmup"; echo "show port stats all"; sleep "$runtime"; echo "show port stats all"
    echo "stop"; sleep 1; echo "quit"; } |
    timeout -k 5 $((runtime + warmup + 30)) dpdk-testpmd -l 0,1 --main-lcore 0 --no-huge -m 1024 --no-pci \
      --single-file-segments --file-prefix="${tag}f" --vdev "net_virtio_user0,path=$sock,queues=1" -- -i \
      --total-num-mbufs=16384 --forward-mode="$( [ "$mode" = io ] && echo io || echo txonly )" --txpkts="$size" >"$log" 2>&1 || true
  local rx tx
  rx=$(grep -o 'Rx-pps: *[0-9]*' "$log" | tail -1 | tr -dc 0-9)
  tx=$(grep -o 'Tx-pps: *[0-9]*' "$log" | tail -1 | tr -dc 0-9)
  [ -n "$rx" ] && [ -n "$tx" ] || { tail -n 30 "$log" >&2; tb_die "no throughput line from testpmd ($log)"; }
  echo "$rx $tx"
}

measure() {  # measure KIND MODE SIZE ROUND -> appends "KIND MODE SIZE ROUND MPPS" to results
  local kind="$1" mode="$2" size="$3" round="$4" sock="$work/$1.sock" pps
  start_backend "$kind" "$sock" "$work/$kind-$mode-$size-$round.log"
  read -r rx tx < <(run_frontend "$mode" "$size" "$sock" "$work/fe-$kind-$mode-$size-$round.log")
  tb_stop backend 5
  if [ "$mode" = io ]; then pps="$rx"; else pps="$tx"; fi
  if [ "$kind" = ours ]; then
    grep -o 'final stats:.*' "$work/$kind-$mode-$size-$round.log" | sed 's/^/  ours /' >&2 || true
  fi
  awk -v k="$kind" -v m="$mode" -v s="$size" -v r="$round" -v p="$pps" 'BEGIN { printf "%s %s %s %s %.3f\n", k, m, s, r, p / 1e6 }' >>"$results"
  tb_log "$kind $mode ${size}B round $round: $(awk -v p="$pps" 'BEGIN { printf "%.3f", p / 1e6 }') Mpps"
}

for mode in $modes; do
  for size in $sizes; do
    for r in $(seq "$rounds"); do
      if [ $((r % 2)) = 1 ]; then order="ours dpdk"; else order="dpdk ours"; fi
      for kind in $order; do measure "$kind" "$mode" "$size" "$r"; done
    done
  done
done

echo
printf '%-7s %-6s %12s %12s %8s\n' mode frame "ours Mpps" "DPDK Mpps" ours/DPDK
for mode in $modes; do
  for size in $sizes; do
    med() { awk -v k="$1" -v m="$mode" -v s="$size" '$1 == k && $2 == m && $3 == s { print $5 }' "$results" | sort -n |
      awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
    o=$(med ours) d=$(med dpdk)
    printf '%-7s %-6s %12s %12s %8s\n' "$mode" "${size}B" "$o" "$d" "$(awk -v o="$o" -v d="$d" 'BEGIN { if (d > 0) printf "%.2f", o / d; else print "-" }')"
  done
done
echo "(median of $rounds alternated rounds, ${runtime} s each; per-run figures in $results)"
