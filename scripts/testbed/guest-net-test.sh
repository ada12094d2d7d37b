#!/bin/sh
# Guest side of every virtio-net interop case (busybox sh; runs as /test.sh from the testbed
# initramfs). Exit 0 = pass; on failure the reason is written to /tmp/testbed-reason and the
# exit status is non-zero.
#
# Waits for the virtio-net interface (driver virtio_net), gives it testbed.ip, pings
# testbed.peer, downloads the stream a TCP server at testbed.peer:testbed.port sends (busybox
# nc; busybox wget needs NSS files a static initramfs does not have) and compares its sha256
# with testbed.sha.
# Multiqueue needs no set-up here (busybox has no ethtool): the Linux driver enables
# min(max_virtqueue_pairs, CPUs) pairs itself; the script reports and checks the queue count.
#
# Roles (testbed.role):
#   fetch (default)  as above, once
#   serve            the other end for a guest-to-guest case: writes testbed.bytes random bytes, prints their sha256,
#                    serves them once on testbed.port (busybox nc -l), pings testbed.peer, and exits once served
#   loop             fetch testbed.rounds times, each round verified ("net-soak: round I/N"), for the back-end restart
#                    case; reports the carrier drops the guest saw (a back-end restart is a link flap)
# Before the first ping and download the guest retries for up to testbed.wait seconds (the peer may still be booting).
#
# Parameters (kernel command line, run-guest.sh --append "..."):
#   testbed.ip=A.B.C.D/N     the guest's address (default 10.77.0.2/24)
#   testbed.peer=A.B.C.D     the namespace's (or the serving guest's) address (default 10.77.0.1)
#   testbed.port=N           the server's port (default 8080)
#   testbed.sha=HEX          its sha256 (required for loop; without it fetch prints the sha for the host to compare)
#   testbed.minrxq=N         fail unless the interface has at least N rx queues (default 1)
#   testbed.bytes=N          serve: bytes to serve (default 4194304)
#   testbed.rounds=N         loop: rounds (default 8)
#   testbed.wait=S           seconds to wait for the peer (default 0: one try)
#   testbed.ipv6=0           IPv6 off on the interface (no router solicitations or MLD reports: the guest sends
#                            nothing on its own, so only an announcement can tell a switch it moved; migrate-net)
#
# Machine-readable lines for the host:
#   TESTBED-NET if=eth0 features=0110... rxq=N txq=N mtu=N
#   TESTBED-NET-BYTES: N     bytes downloaded (loop: per round)
#   TESTBED-NET-MS: N        how long the download took (guest /proc/uptime, 10 ms resolution)
#   TESTBED-NET-SHA: HEX     the sha256 of what was downloaded (fetch) or served (serve)
#   TESTBED-NET-CARRIER-DOWN: N  carrier drops seen (loop)
param() {
  for w in $(cat /proc/cmdline); do
    case "$w" in "testbed.$1="*) echo "${w#*=}"; return ;; esac
  done
  echo "$2"
}
info() { echo "testbed-net: $*"; }
fail() { echo "testbed-net: FAIL: $*"; echo "$*" >/tmp/testbed-reason; exit 1; }
uptime_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }

IP=$(param ip 10.77.0.2/24)
PEER=$(param peer 10.77.0.1)
PORT=$(param port 8080)
SHA=$(param sha "")
MINRXQ=$(param minrxq 1)
ROLE=$(param role fetch)
WAIT=$(param wait 0)
case "$ROLE" in
  fetch|serve|loop) ;;
  *) fail "unknown testbed.role=$ROLE" ;;
esac
[ "$ROLE" != loop ] || [ -n "$SHA" ] || fail "testbed.role=loop needs testbed.sha="

# The virtio-net interface: the one whose device's driver is virtio_net (up to 10 s).
IF=""
i=0
while [ -z "$IF" ] && [ "$i" -lt 100 ]; do
  for d in /sys/class/net/*; do
    drv=$(readlink "$d/device/driver" 2>/dev/null)
    case "$drv" in */virtio_net) IF=${d##*/} ;; esac
  done
  [ -n "$IF" ] || { sleep 0.1; i=$((i + 1)); }
done
[ -n "$IF" ] || fail "no virtio_net interface appeared (have: $(ls /sys/class/net | tr '\n' ' '))"
features=$(cat "/sys/class/net/$IF/device/features" 2>/dev/null)
rxq=$(ls -d "/sys/class/net/$IF/queues/rx-"* 2>/dev/null | wc -l)
txq=$(ls -d "/sys/class/net/$IF/queues/tx-"* 2>/dev/null | wc -l)
echo "TESTBED-NET if=$IF features=$features rxq=$rxq txq=$txq mtu=$(cat "/sys/class/net/$IF/mtu")"
[ "$rxq" -ge "$MINRXQ" ] || fail "$IF has $rxq rx queues, fewer than $MINRXQ"

ip link set lo up
if [ "$(param ipv6 1)" = 0 ]; then
  echo 1 >"/proc/sys/net/ipv6/conf/$IF/disable_ipv6" || fail "could not turn IPv6 off on $IF"
fi
ip link set "$IF" up || fail "ip link set $IF up failed"
ip addr add "$IP" dev "$IF" || fail "ip addr add $IP dev $IF failed"
# The carrier follows the device's link status (NET_STATUS).
i=0
while [ "$(cat "/sys/class/net/$IF/carrier" 2>/dev/null)" != 1 ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ "$(cat "/sys/class/net/$IF/carrier" 2>/dev/null)" = 1 ] || fail "$IF has no carrier"

# retry SECONDS CMD...: run CMD until it succeeds, once a second for up to SECONDS (at least once)
retry() {
  n=$1; shift
  while ! "$@"; do
    [ "$n" -gt 0 ] || return 1
    n=$((n - 1)); sleep 1
  done
}

if [ "$ROLE" = serve ]; then
  BYTES=$(param bytes 4194304)
  head -c "$BYTES" /dev/urandom >/tmp/blob || fail "could not make $BYTES random bytes"
  echo "TESTBED-NET-SHA: $(sha256sum /tmp/blob | cut -d' ' -f1)"
  nc -l -p "$PORT" -e cat /tmp/blob &
  server=$!
  info "serving $BYTES bytes on port $PORT"
  retry "$WAIT" ping -c 1 -W 2 "$PEER" >/dev/null || fail "ping $PEER failed for $WAIT s"
  info "ping $PEER ok"
  wait "$server" || fail "nc -l -p $PORT failed"
  info "served $BYTES bytes"
  info "stats: $(cat /sys/class/net/$IF/statistics/rx_packets) rx, $(cat /sys/class/net/$IF/statistics/tx_packets) tx, rx_errors $(cat /sys/class/net/$IF/statistics/rx_errors), rx_dropped $(cat /sys/class/net/$IF/statistics/rx_dropped)"
  exit 0
fi

retry "$WAIT" ping -c 3 -W 5 "$PEER" || fail "ping $PEER failed"
info "ping $PEER ok"

# fetch ROUND: download once (connection retried for up to WAIT s: the server may not listen yet) and report it
fetch() {
  t0=$(uptime_ms)
  n=$WAIT
  while :; do
    nc "$PEER" "$PORT" </dev/null >/tmp/blob && [ -s /tmp/blob ] && break
    [ "$n" -gt 0 ] || fail "nc $PEER $PORT failed (round $1)"
    n=$((n - 1)); sleep 1
  done
  t1=$(uptime_ms)
  bytes=$(wc -c </tmp/blob)
  echo "TESTBED-NET-BYTES: $bytes"
  echo "TESTBED-NET-MS: $((t1 - t0))"
  got=$(sha256sum /tmp/blob | cut -d' ' -f1)
  if [ -z "$SHA" ]; then
    echo "TESTBED-NET-SHA: $got"
    info "downloaded $bytes bytes in $((t1 - t0)) ms (sha256 for the host to compare)"
  else
    [ "$got" = "$SHA" ] || fail "round $1: downloaded $bytes bytes with sha256 $got, expected $SHA"
    info "downloaded $bytes bytes in $((t1 - t0)) ms, sha256 ok"
  fi
}

if [ "$ROLE" = loop ]; then
  ROUNDS=$(param rounds 8)
  down0=$(cat "/sys/class/net/$IF/carrier_down_count" 2>/dev/null || echo 0)
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    fetch "$r"
    echo "net-soak: round $r/$ROUNDS"
    r=$((r + 1))
  done
  down=$(cat "/sys/class/net/$IF/carrier_down_count" 2>/dev/null || echo 0)
  echo "TESTBED-NET-CARRIER-DOWN: $((down - down0))"
else
  fetch 1
fi
# Counters as the guest saw them (drops, errors), for the log.
info "stats: $(cat /sys/class/net/$IF/statistics/rx_packets) rx, $(cat /sys/class/net/$IF/statistics/tx_packets) tx, rx_errors $(cat /sys/class/net/$IF/statistics/rx_errors), rx_dropped $(cat /sys/class/net/$IF/statistics/rx_dropped)"
exit 0
