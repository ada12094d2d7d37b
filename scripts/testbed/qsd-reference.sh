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
# Logs and images: .testbed/qsd/<case>/ (or $QSD_OUT/<case>/). Exit 0 only if every case passes.
set -euo pipefail
source "$(dirname "$0")/common.sh"
exec </dev/null

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(rw ro mq eio)

IMG_SIZE=64M
PREFILL_OFF=$((40 * 1048576))
PREFILL_LEN=1048576
GUEST_TIMEOUT="${GUEST_TIMEOUT:-180}"
# Where images and logs go (interop.sh qsd points this at .testbed/interop/qsd).
QSD_OUT="${QSD_OUT:-$TESTBED_DIR/qsd}"

bash "$TESTBED_SCRIPTS/setup.sh"
initrd="$TESTBED_DEFAULT_INITRD"
bash "$TESTBED_SCRIPTS/build-initramfs.sh" "$TESTBED_SCRIPTS/guest-blk-test.sh" "$initrd"

sockdir="$(mktemp -d "${TMPDIR:-/tmp}/vstb-qsd.XXXXXX")"   # unix socket paths must stay short
qsd_pid=""
trap 'tb_stop qsd_pid 5; rm -rf "$sockdir"' EXIT

for c in "${cases[@]}"; do
  dir="$QSD_OUT/$c"
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

  tb_make_image "$img" "$IMG_SIZE" "$PREFILL_OFF" "$PREFILL_LEN" "$seed"
  before="$(sha256sum <"$img" | cut -d' ' -f1)"

  rm -f "$sock"
  qsd=(qemu-storage-daemon
    --blockdev "driver=file,node-name=file0,filename=$img"
    "${disk[@]}"
    --export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$sock,writable=$writable,num-queues=$nq")
  { printf '[testbed] %s: qsd:' "$c"; printf ' %q' "${qsd[@]}"; echo; } >&2
  tb_start qsd_pid "$qlog" timeout -k 5 $((GUEST_TIMEOUT + 60)) "${qsd[@]}"
  tb_wait_socket "$sock" "$qsd_pid" "$qlog" 10 || tb_die "$c: qemu-storage-daemon did not come up"

  t0=$(tb_now_ms)
  set +e
  bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" --initrd "$initrd" --log "$glog" \
    --append "$append" -- "${smp[@]}" \
    -chardev "socket,id=c0,path=$sock" -device "vhost-user-blk-pci,chardev=c0,disable-legacy=on,num-queues=$nq"
  grc=$?
  set -e
  t1=$(tb_now_ms)
  tb_stop qsd_pid 5
  secs="$(tb_secs "$t0" "$t1")"
  tb_guest_lines "$glog" | sed "s/^/[guest $c] /" >&2

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
    r="$(tb_check_written "$c" "$img" "$glog" "$PREFILL_OFF" "$PREFILL_LEN" "$seed")"
  fi
  tb_record "$c" "$r" "$secs"
  tb_log "$c: $r in ${secs}s (boot + test; logs in $dir)"
done

tb_summary qsd-reference "${cases[@]}"
exit "$TB_OVERALL"
