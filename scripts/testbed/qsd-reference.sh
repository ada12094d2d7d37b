#!/usr/bin/env bash
# Proves the testbed against the reference vhost-user-blk backend,
# qemu-storage-daemon: for each case it creates a raw image, prefills a host
# region, exports the image over a vhost-user-blk unix socket, boots the guest
# (run-guest.sh) with vhost-user-blk-pci on that socket, and then checks on the
# host, from the image file with dd + sha256sum, every region the guest claims
# to have written (against both the guest's checksum and a host-side
# regeneration of the pattern).
#
#   bash scripts/testbed/qsd-reference.sh            # all cases: rw ro mq eio
#   bash scripts/testbed/qsd-reference.sh rw mq      # some cases
#
# Cases:
#   rw  writable export, 1 queue, 1 vCPU, guest mode rw
#   ro  writable=off export (VIRTIO_BLK_F_RO), guest mode ro; image must be unchanged
#   mq  writable export, num-queues=4, -smp 4, guest mode parallel (4 concurrent jobs)
#   eio writable export whose writes all fail (blkdebug inject-error iotype=write errno=5), guest mode ro:
#       the device does not offer VIRTIO_BLK_F_RO but answers VIRTIO_BLK_S_IOERR; the guest
#       must see EIO and the image must be unchanged
#
# Logs and images: .testbed/qsd/<case>/. Exit 0 only if every case passes.
set -euo pipefail
source "$(dirname "$0")/common.sh"
exec </dev/null

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(rw ro mq eio)

IMG_SIZE=64M
PREFILL_OFF=$((40 * 1048576))
PREFILL_LEN=1048576
GUEST_TIMEOUT="${GUEST_TIMEOUT:-180}"

bash "$TESTBED_SCRIPTS/setup.sh"
initrd="$TESTBED_DEFAULT_INITRD"
bash "$TESTBED_SCRIPTS/build-initramfs.sh" "$TESTBED_SCRIPTS/guest-blk-test.sh" "$initrd"

sockdir="$(mktemp -d "${TMPDIR:-/tmp}/vstb-qsd.XXXXXX")"   # unix socket paths must stay short
qsd_pid=""
stop_qsd() {
  if [ -n "$qsd_pid" ]; then
    kill "$qsd_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$qsd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$qsd_pid" 2>/dev/null || true
    wait "$qsd_pid" 2>/dev/null || true
    qsd_pid=""
  fi
}
trap 'stop_qsd; rm -rf "$sockdir"' EXIT

pattern() { busybox sh "$TESTBED_SCRIPTS/pattern.sh" "$@"; }
img_sha() {  # img_sha IMG OFF LEN
  dd if="$1" bs=65536 skip="$2" count="$3" iflag=skip_bytes,count_bytes status=none | sha256sum | cut -d' ' -f1
}

# host_verify CASE IMG LOG: check every TESTBED-REGION line against the image
host_verify() {
  local c="$1" img="$2" log="$3" n=0 line name off len seed sha got want
  while read -r line; do
    name='' off='' len='' seed='' sha=''
    for kv in $line; do
      case "$kv" in
        name=*) name="${kv#name=}" ;; off=*) off="${kv#off=}" ;; len=*) len="${kv#len=}" ;;
        seed=*) seed="${kv#seed=}" ;; sha256=*) sha="${kv#sha256=}" ;;
      esac
    done
    got="$(img_sha "$img" "$off" "$len")"
    want="$(pattern sha "$seed" "$len")"
    if [ "$want" != "$sha" ]; then
      tb_log "$c: region $name: guest sha256 $sha differs from the host's pattern $want"; return 1
    fi
    if [ "$got" != "$want" ]; then
      tb_log "$c: region $name ($off+$len): image has $got, want $want"; return 1
    fi
    n=$((n + 1))
  done < <(tr -d '\r' <"$log" | grep -a '^TESTBED-REGION ' | sed 's/^TESTBED-REGION //')
  echo "$n"
}

declare -A result timing
overall=0
for c in "${cases[@]}"; do
  dir="$TESTBED_DIR/qsd/$c"
  rm -rf "$dir"; mkdir -p "$dir"
  img="$dir/disk.img"; sock="$sockdir/$c.sock"; glog="$dir/guest.log"; qlog="$dir/qsd.log"
  writable=on; nq=1; smp=(); seed="host-$c"
  disk=(--blockdev driver=raw,node-name=disk0,file=file0)
  append="testbed.verify=$PREFILL_OFF:$PREFILL_LEN:$seed testbed.seed=$c"
  case "$c" in
    rw) append="testbed.mode=rw $append" ;;
    ro) append="testbed.mode=ro $append"; writable=off ;;
    mq) append="testbed.mode=parallel testbed.minqueues=4 $append"; nq=4; smp=(-smp 4) ;;
    eio) append="testbed.mode=ro $append"
      disk=(--blockdev driver=blkdebug,node-name=dbg,image=file0,inject-error.0.event=pwritev,inject-error.0.iotype=write,inject-error.0.errno=5
            --blockdev driver=raw,node-name=disk0,file=dbg) ;;
    *) tb_die "unknown case $c (rw, ro, mq, eio)" ;;
  esac

  truncate -s "$IMG_SIZE" "$img"
  pattern gen "$seed" "$PREFILL_LEN" | dd of="$img" bs=65536 seek="$PREFILL_OFF" oflag=seek_bytes conv=notrunc status=none
  before="$(sha256sum <"$img" | cut -d' ' -f1)"

  rm -f "$sock"
  qsd=(qemu-storage-daemon
    --blockdev "driver=file,node-name=file0,filename=$img"
    "${disk[@]}"
    --export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$sock,writable=$writable,num-queues=$nq")
  { printf '[testbed] %s: qsd:' "$c"; printf ' %q' "${qsd[@]}"; echo; } >&2
  timeout -k 5 $((GUEST_TIMEOUT + 60)) "${qsd[@]}" >"$qlog" 2>&1 &
  qsd_pid=$!
  for _ in $(seq 100); do
    [ -S "$sock" ] && break
    kill -0 "$qsd_pid" 2>/dev/null || { cat "$qlog" >&2; tb_die "$c: qemu-storage-daemon exited"; }
    sleep 0.1
  done
  [ -S "$sock" ] || tb_die "$c: no socket $sock after 10 s"

  t0=$(tb_now_ms)
  set +e
  bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" --initrd "$initrd" --log "$glog" \
    --append "$append" -- "${smp[@]}" \
    -chardev "socket,id=c0,path=$sock" -device "vhost-user-blk-pci,chardev=c0,disable-legacy=on,num-queues=$nq"
  grc=$?
  set -e
  t1=$(tb_now_ms)
  stop_qsd
  timing[$c]="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')"
  tr -d '\r' <"$glog" | grep -a -E '^(TESTBED-|testbed-blk:)' | sed "s/^/[guest $c] /" >&2

  r=PASS
  if [ "$grc" -ne 0 ]; then
    r="FAIL (guest: run-guest.sh exit $grc)"
  elif [ "$c" = ro ] || [ "$c" = eio ]; then
    after="$(sha256sum <"$img" | cut -d' ' -f1)"
    if [ "$after" != "$before" ]; then r="FAIL (image changed although every write failed)"
    elif [ "$c" = ro ] && ! tr -d '\r' <"$glog" | grep -aq '^TESTBED-RO ro_flag=1 '; then r="FAIL (guest did not see VIRTIO_BLK_F_RO)"
    elif [ "$c" = eio ] && ! tr -d '\r' <"$glog" | grep -a '^TESTBED-RO ro_flag=0 ' | grep -q 'Input/output error'; then
      r="FAIL (guest did not see EIO from the device)"
    else tb_log "$c: image unchanged (sha256 $before)"; fi
  else
    if ! n="$(host_verify "$c" "$img" "$glog")"; then r="FAIL (host check of the image)"
    elif [ "$n" -lt 1 ]; then r="FAIL (guest reported no regions)"
    elif [ "$(img_sha "$img" "$PREFILL_OFF" "$PREFILL_LEN")" != "$(pattern sha "$seed" "$PREFILL_LEN")" ]; then
      r="FAIL (host prefill region was clobbered)"
    else tb_log "$c: $n guest-written regions verified in the image on the host"; fi
  fi
  result[$c]="$r"
  [ "$r" = PASS ] || overall=1
  tb_log "$c: $r in ${timing[$c]}s (boot + test; logs in $dir)"
done

echo "qsd-reference summary:"
for c in "${cases[@]}"; do printf '  %-3s %-6s %ss\n' "$c" "${result[$c]}" "${timing[$c]}"; done
exit "$overall"
