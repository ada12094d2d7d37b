#!/bin/sh
# Guest side of every virtio-blk interop case (busybox sh; runs as /test.sh
# from the testbed initramfs). Exit 0 = pass; on failure the reason is written
# to /tmp/testbed-reason and the exit status is non-zero.
#
# Parameters come from the kernel command line (run-guest.sh --append "..."):
#   testbed.mode=rw|ro|parallel|soak|resize|discard  comma-separated list, run in order (default rw)
#                                 resize: wait for the host to grow the disk, then use its new end
#                                 discard: write a region, blkdiscard it, check it reads back as zeros
#                                 rw:       writes a known pattern at several offsets
#                                           (buffered, O_DIRECT, unaligned-to-4k, the last MiB,
#                                           an overwrite of cached data), sync, drop caches,
#                                           read back buffered and O_DIRECT, compare sha256
#                                 ro:       reads must work, every write must fail, data
#                                           unchanged. Linux 6.1 fails the write with EPERM
#                                           when the device offers VIRTIO_BLK_F_RO, and with
#                                           EIO when the device answers VIRTIO_BLK_S_IOERR
#                                 parallel: JOBS concurrent dd writers/readers, each pinned
#                                           to a CPU (so blk-mq spreads them over the queues)
#                                 soak:     I/O-bound version of parallel for the reconnect test:
#                                           the patterns (two per job) are generated once, then
#                                           ROUNDS rounds alternate them (so a lost write shows up
#                                           as the other pattern) with no CPU work between the I/O
#   testbed.dev=/dev/vda          the disk (default /dev/vda)
#   testbed.mib=4                 MiB per region (default 4)
#   testbed.seed=run1             pattern seed prefix (default run1)
#   testbed.jobs=4                parallel mode: concurrent jobs (default 4)
#   testbed.rounds=2              parallel/soak mode: write+verify rounds (default 2)
#   testbed.verify=OFF:LEN:SEED[,...]  regions the host prefilled with pattern SEED;
#                                 checked first (required for ro mode)
#   testbed.minqueues=N           fail unless the disk has at least N blk-mq queues
#   testbed.bs=65536              soak mode: dd block size (bs=LEN: one system call per region, which
#                                 the block layer splits into many requests that are in flight at once)
#   testbed.maxkb=N               write N to /sys/block/DEV/queue/max_sectors_kb first (small
#                                 requests, so one big O_DIRECT dd keeps LEN/N KiB requests in flight)
#   testbed.latefill=MARK:OFF:LEN:SHA  soak mode (live migration): a background job polls the 8 bytes at MARK
#                                 (O_DIRECT) until the host writes "LATEFILL" there (qmp-migrate.py --signal, once
#                                 QEMU's first pass over RAM is done), then reads OFF+LEN (host-written, sha256 SHA)
#                                 buffered: the device's DMA fills page-cache pages no CPU writes, which reach the
#                                 destination only through the back-end's dirty log. Prints TESTBED-LATEFILL filled
#                                 (qmp-migrate.py --await holds the migration until then). After the last round (on
#                                 the destination) the cached copy is checked again without I/O: a mismatch is a
#                                 write the migration lost; a copy no longer cached fails as inconclusive.
#   testbed.qdprobe=1             soak mode: sample /sys/block/DEV/inflight every 20 ms during the I/O
#                                 and print TESTBED-INFLIGHT max=N (the most requests the driver had
#                                 in flight at once)
#
# Machine-readable lines for the host (scripts/testbed/qsd-reference.sh checks them
# against the image file):
#   TESTBED-DISK dev=/dev/vda size=BYTES ro=0|1 queues=N lbs=512 features=...
#   TESTBED-REGION name=NAME off=BYTES len=BYTES seed=SEED sha256=HEX io=buffered|direct
#   TESTBED-RO ro_flag=0|1 direct_write="ERR" buffered_write="ERR"
#   TESTBED-INFLIGHT max=N samples=N   (soak with testbed.qdprobe=1)
set -- ; . /testbed/pattern.sh

param() {
  for w in $(cat /proc/cmdline); do
    case "$w" in "testbed.$1="*) echo "${w#*=}"; return ;; esac
  done
  echo "$2"
}
info() { echo "testbed-blk: $*"; }
fail() { echo "testbed-blk: FAIL: $*"; echo "$*" >/tmp/testbed-reason; exit 1; }

DEV=$(param dev /dev/vda)
MODES=$(param mode rw)
MIB=$(param mib 4)
SEED=$(param seed run1)
JOBS=$(param jobs 4)
ROUNDS=$(param rounds 2)
VERIFY=$(param verify "")
MINQ=$(param minqueues 0)
SOAK_BS=$(param bs 65536)
MAXKB=$(param maxkb "")
QDPROBE=$(param qdprobe 0)
LATEFILL=$(param latefill "")
M=1048576
LEN=$((MIB * M))

n=0
while [ ! -b "$DEV" ]; do
  n=$((n + 1)); [ "$n" -gt 100 ] && fail "no block device $DEV after 10s (block devices: $(ls /sys/block | tr "\n" " "))"
  usleep 100000
done
name=${DEV##*/}
SIZE=$(blockdev --getsize64 "$DEV") || fail "blockdev --getsize64 $DEV"
LBS=$(blockdev --getss "$DEV")
RO=$(cat /sys/block/$name/ro)
NQ=$(ls /sys/block/$name/mq | wc -l)
FEAT=$(cat /sys/block/$name/device/features 2>/dev/null)
NCPU=$(nproc)
echo "TESTBED-DISK dev=$DEV size=$SIZE ro=$RO queues=$NQ lbs=$LBS cpus=$NCPU features=$FEAT"
[ "$NQ" -ge "$MINQ" ] || fail "$DEV has $NQ queue(s), expected at least $MINQ"
if [ -n "$MAXKB" ]; then
  echo "$MAXKB" >/sys/block/$name/queue/max_sectors_kb || fail "cannot set max_sectors_kb to $MAXKB"
  info "max_sectors_kb $(cat /sys/block/$name/queue/max_sectors_kb) (hw $(cat /sys/block/$name/queue/max_hw_sectors_kb)), nr_requests $(cat /sys/block/$name/queue/nr_requests)"
fi

drop_caches() {
  sync
  blockdev --flushbufs "$DEV" || fail "blockdev --flushbufs $DEV"
  echo 3 >/proc/sys/vm/drop_caches
}

# bs for a transfer of LEN bytes at OFF: the biggest of 1M/128k/64k/4k/512 dividing both.
pick_bs() {
  for b in 1048576 131072 65536 4096 512; do
    if [ $(($1 % b)) -eq 0 ] && [ $(($2 % b)) -eq 0 ]; then echo $b; return; fi
  done
  echo 512
}

# write_region NAME OFF LEN SEED buffered|direct [BS]
write_region() {
  f=/tmp/pat.$1
  pattern_gen "$4" "$3" >"$f" || fail "pattern_gen $4 $3"
  bs=${6:-$(pick_bs "$2" "$3")}
  if [ "$5" = direct ]; then
    dd if="$f" of="$DEV" bs="$bs" seek="$2" oflag=seek_bytes,direct conv=notrunc 2>/tmp/dd.err ||
      fail "$1: direct write of $3 bytes at $2 failed: $(grep -v records /tmp/dd.err | tail -n1)"
  else
    dd if="$f" of="$DEV" bs="$bs" seek="$2" oflag=seek_bytes conv=notrunc,fsync 2>/tmp/dd.err ||
      fail "$1: buffered write of $3 bytes at $2 failed: $(grep -v records /tmp/dd.err | tail -n1)"
  fi
  sha=$(sha256sum <"$f" | cut -d' ' -f1)
  rm -f "$f"
  # registry of what should be on disk; a later write of the same NAME replaces it
  grep -v "^$1 " /tmp/regions >/tmp/regions.new 2>/dev/null; mv /tmp/regions.new /tmp/regions
  echo "$1 $2 $3 $4 $sha $5" >>/tmp/regions
}

# read_sha OFF LEN buffered|direct -> sha256 of the device range
read_sha() {
  bs=$(pick_bs "$1" "$2")
  if [ "$3" = direct ]; then fl=skip_bytes,count_bytes,direct; else fl=skip_bytes,count_bytes; fi
  dd if="$DEV" bs="$bs" skip="$1" count="$2" iflag="$fl" 2>/tmp/dd.rerr | sha256sum | cut -d' ' -f1
  # dd's status is lost in the pipe; a short read shows up as a wrong checksum
}

# check_region NAME OFF LEN SHA: buffered read, then O_DIRECT read if aligned
check_region() {
  got=$(read_sha "$2" "$3" buffered)
  [ "$got" = "$4" ] || fail "$1: buffered read-back mismatch at $2+$3 (got ${got%"${got#????????????}"}, want ${4%"${4#????????????}"}) $(grep -v records /tmp/dd.rerr | tail -n1)"
  if [ $(($2 % LBS)) -eq 0 ] && [ $(($3 % LBS)) -eq 0 ]; then
    got=$(read_sha "$2" "$3" direct)
    [ "$got" = "$4" ] || fail "$1: O_DIRECT read-back mismatch at $2+$3 $(grep -v records /tmp/dd.rerr | tail -n1)"
  fi
}

check_all_regions() {
  while read -r nm off len seed sha how; do
    check_region "$nm" "$off" "$len" "$sha"
  done </tmp/regions
}

print_regions() {
  while read -r nm off len seed sha how; do
    echo "TESTBED-REGION name=$nm off=$off len=$len seed=$seed sha256=$sha io=$how"
  done </tmp/regions
}

check_verify_list() {
  [ -n "$VERIFY" ] || return 0
  for v in $(echo "$VERIFY" | tr ',' ' '); do
    off=${v%%:*}; rest=${v#*:}; len=${rest%%:*}; seed=${rest#*:}
    check_region "verify@$off" "$off" "$len" "$(pattern_sha "$seed" "$len")"
    info "host-written region $off+$len (seed $seed) reads back correctly"
  done
}

mode_rw() {
  # layout (LEN = testbed.mib MiB): R1 [0,LEN) | R2 [LEN+12K, 2LEN+12K) | R3 3.5 KiB at
  # 2LEN+1M+33 sectors | R4 256 KiB at 2LEN+2M | R5 the last LEN bytes of the disk
  need=$((3 * LEN + 4 * M))
  [ "$SIZE" -ge "$need" ] || fail "rw mode needs a disk of at least $need bytes, $DEV has $SIZE"
  : >/tmp/regions
  write_region R1-start  0                       "$LEN" "$SEED-R1" buffered
  write_region R2-direct $((LEN + 12288))        "$LEN" "$SEED-R2" direct
  write_region R3-odd    $((2 * LEN + M + 16896)) 3584  "$SEED-R3" buffered 512
  # overwrite data that is in the page cache with an O_DIRECT write: the buffered
  # read-back must see the new data
  write_region R4-over   $((2 * LEN + 2 * M))    262144 "$SEED-R4a" buffered
  dd if="$DEV" of=/dev/null bs=65536 skip=$((2 * LEN + 2 * M)) count=262144 iflag=skip_bytes,count_bytes 2>/dev/null
  write_region R4-over   $((2 * LEN + 2 * M))    262144 "$SEED-R4b" direct
  write_region R5-end    $((SIZE - LEN))         "$LEN" "$SEED-R5" direct 1048576
  info "rw: $(wc -l </tmp/regions) regions written; sync, flush, drop caches"
  drop_caches
  check_all_regions
  info "rw: all regions read back correctly (buffered and O_DIRECT)"
  print_regions
}

mode_ro() {
  [ "$RO" = 1 ] && info "ro: kernel marked $DEV read-only (VIRTIO_BLK_F_RO offered)"
  [ -n "$VERIFY" ] || info "ro: no testbed.verify regions given; checking only that data is unchanged"
  check_verify_list
  before=$(read_sha 0 65536 direct)
  pattern_gen "$SEED-ro" 65536 >/tmp/pat.ro
  if dd if=/tmp/pat.ro of="$DEV" bs=4096 oflag=direct conv=notrunc 2>/tmp/dd.err; then
    fail "ro: O_DIRECT write to the read-only disk succeeded"
  fi
  derr=$(grep -v records /tmp/dd.err | tail -n1)
  if dd if=/tmp/pat.ro of="$DEV" bs=4096 conv=notrunc,fsync 2>/tmp/dd.err; then
    fail "ro: buffered write + fsync to the read-only disk succeeded"
  fi
  berr=$(grep -v records /tmp/dd.err | tail -n1)
  echo "TESTBED-RO ro_flag=$RO direct_write=\"$derr\" buffered_write=\"$berr\""
  case "$derr$berr" in
    *"Read-only file system"*|*"Input/output error"*|*"Operation not permitted"*) ;;
    *) fail "ro: writes failed, but not with EROFS/EIO/EPERM: $derr / $berr" ;;
  esac
  drop_caches
  after=$(read_sha 0 65536 direct)
  [ "$before" = "$after" ] || fail "ro: first 64 KiB changed although every write failed"
  check_verify_list
  info "ro: reads work, writes fail, data unchanged"
}

mode_parallel() {
  base=$((16 * M))
  need=$((base + JOBS * LEN))
  [ "$SIZE" -ge "$need" ] || fail "parallel mode needs a disk of at least $need bytes, $DEV has $SIZE"
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    k=0
    while [ "$k" -lt "$JOBS" ]; do
      pattern_gen "$SEED-r$r-p$k" "$LEN" >/tmp/pat.p$k || fail "pattern_gen"
      sha256sum </tmp/pat.p$k | cut -d' ' -f1 >/tmp/want.p$k
      k=$((k + 1))
    done
    # concurrent writers: even jobs O_DIRECT, odd jobs buffered + fsync, adjacent regions
    pids=""
    k=0
    while [ "$k" -lt "$JOBS" ]; do
      off=$((base + k * LEN))
      if [ $((k % 2)) -eq 0 ]; then fl="oflag=seek_bytes,direct conv=notrunc"; else fl="oflag=seek_bytes conv=notrunc,fsync"; fi
      # shellcheck disable=SC2086
      taskset -c $((k % NCPU)) dd if=/tmp/pat.p$k of="$DEV" bs=65536 seek=$off $fl 2>/tmp/err.p$k &
      pids="$pids $!"
      k=$((k + 1))
    done
    k=0
    for p in $pids; do
      wait "$p" || fail "parallel round $r: writer $k failed: $(grep -v records /tmp/err.p$k | tail -n1)"
      k=$((k + 1))
    done
    drop_caches
    # concurrent readers, alternating O_DIRECT and buffered
    pids=""
    k=0
    while [ "$k" -lt "$JOBS" ]; do
      off=$((base + k * LEN))
      if [ $((k % 2)) -eq 1 ]; then fl=skip_bytes,count_bytes,direct; else fl=skip_bytes,count_bytes; fi
      ( taskset -c $((k % NCPU)) dd if="$DEV" bs=65536 skip=$off count="$LEN" iflag=$fl 2>/dev/null |
          sha256sum | cut -d' ' -f1 >/tmp/got.p$k ) &
      pids="$pids $!"
      k=$((k + 1))
    done
    for p in $pids; do wait "$p"; done
    k=0
    while [ "$k" -lt "$JOBS" ]; do
      [ "$(cat /tmp/got.p$k)" = "$(cat /tmp/want.p$k)" ] ||
        fail "parallel round $r: job $k region $((base + k * LEN))+$LEN mismatch"
      k=$((k + 1))
    done
    info "parallel: round $r/$ROUNDS, $JOBS concurrent jobs written and verified"
    r=$((r + 1))
  done
  r=$((r - 1))
  k=0
  while [ "$k" -lt "$JOBS" ]; do
    if [ $((k % 2)) -eq 0 ]; then how=direct; else how=buffered; fi
    echo "TESTBED-REGION name=P$k off=$((base + k * LEN)) len=$LEN seed=$SEED-r$r-p$k sha256=$(cat /tmp/want.p$k) io=$how"
    rm -f /tmp/pat.p$k
    k=$((k + 1))
  done
}

mode_soak() {
  base=$((16 * M))
  need=$((base + JOBS * LEN))
  [ "$SIZE" -ge "$need" ] || fail "soak mode needs a disk of at least $need bytes, $DEV has $SIZE"
  k=0
  while [ "$k" -lt "$JOBS" ]; do
    for v in 0 1; do
      pattern_gen "$SEED-s$v-p$k" "$LEN" >/tmp/pat.s$v.p$k || fail "pattern_gen"
      sha256sum </tmp/pat.s$v.p$k | cut -d' ' -f1 >/tmp/want.s$v.p$k
    done
    k=$((k + 1))
  done
  [ $((LEN % SOAK_BS)) -eq 0 ] || fail "soak: testbed.bs=$SOAK_BS does not divide the region size $LEN"
  probe=""
  if [ "$QDPROBE" = 1 ]; then
    # the driver's own count of requests in flight (reads writes), its maximum kept in a file
    ( mx=0; ns=0
      while [ ! -e /tmp/qdprobe.stop ]; do
        read -r a b </sys/block/$name/inflight
        [ $((a + b)) -gt "$mx" ] && { mx=$((a + b)); echo "$mx $ns" >/tmp/qdprobe.max; }
        ns=$((ns + 1)); usleep 20000
      done
      echo "$mx $ns" >/tmp/qdprobe.max ) &
    probe=$!
  fi
  lf=""
  if [ -n "$LATEFILL" ]; then
    lfmark=${LATEFILL%%:*}; rest=${LATEFILL#*:}; lfoff=${rest%%:*}; rest=${rest#*:}; lflen=${rest%%:*}; lfsha=${rest#*:}
    [ -n "$lfsha" ] && [ $((lfoff + lflen)) -le "$SIZE" ] || fail "testbed.latefill=$LATEFILL: want MARK:OFF:LEN:SHA inside the disk"
    rm -f /tmp/lf.stop /tmp/lf.fail /tmp/lf.filled
    # Held open until the check: Linux drops a block device's whole page cache when its last opener closes it
    # (blkdev_put -> kill_bdev), and every dd here opens and closes it.
    exec 9<"$DEV"
    ( while [ ! -e /tmp/lf.stop ]; do
        m=$(dd if="$DEV" bs=4096 skip="$lfmark" count=4096 iflag=skip_bytes,count_bytes,direct 2>/dev/null | head -c 8)
        [ "$m" = LATEFILL ] && break
        usleep 100000
      done
      [ -e /tmp/lf.stop ] && exit 0
      # Never read before, so not cached: the buffered read is the device's DMA into fresh page-cache pages.
      got=$(read_sha "$lfoff" "$lflen" buffered)
      [ "$got" = "$lfsha" ] || { echo "$lfoff+$lflen read from the device differs (sha256 $got)" >/tmp/lf.fail; exit 1; }
      : >/tmp/lf.filled
      echo "TESTBED-LATEFILL filled off=$lfoff len=$lflen" ) &
    lf=$!
  fi
  info "soak: patterns ready, I/O starts ($ROUNDS rounds x $JOBS jobs x $MIB MiB, bs $SOAK_BS)"
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    v=$((r % 2))
    pids=""
    k=0
    while [ "$k" -lt "$JOBS" ]; do
      off=$((base + k * LEN))
      if [ $((k % 2)) -eq 0 ]; then fl="oflag=seek_bytes,direct conv=notrunc"; else fl="oflag=seek_bytes conv=notrunc,fsync"; fi
      # shellcheck disable=SC2086
      taskset -c $((k % NCPU)) dd if=/tmp/pat.s$v.p$k of="$DEV" bs="$SOAK_BS" seek=$off $fl 2>/tmp/err.p$k &
      pids="$pids $!"
      k=$((k + 1))
    done
    k=0
    for p in $pids; do
      wait "$p" || fail "soak round $r: writer $k failed: $(grep -v records /tmp/err.p$k | tail -n1)"
      k=$((k + 1))
    done
    # O_DIRECT readers: the data comes from the device, not the page cache
    pids=""
    k=0
    while [ "$k" -lt "$JOBS" ]; do
      off=$((base + k * LEN))
      ( taskset -c $((k % NCPU)) dd if="$DEV" bs="$SOAK_BS" skip=$off count="$LEN" iflag=skip_bytes,count_bytes,direct 2>/dev/null |
          sha256sum | cut -d' ' -f1 >/tmp/got.p$k ) &
      pids="$pids $!"
      k=$((k + 1))
    done
    for p in $pids; do wait "$p"; done
    k=0
    while [ "$k" -lt "$JOBS" ]; do
      [ "$(cat /tmp/got.p$k)" = "$(cat /tmp/want.s$v.p$k)" ] ||
        fail "soak round $r: job $k region $((base + k * LEN))+$LEN mismatch"
      k=$((k + 1))
    done
    info "soak: round $r/$ROUNDS verified"
    r=$((r + 1))
  done
  if [ -n "$lf" ]; then
    : >/tmp/lf.stop; wait "$lf"
    [ -e /tmp/lf.fail ] && fail "late fill: $(cat /tmp/lf.fail)"
    [ -e /tmp/lf.filled ] || fail "late fill: the host's LATEFILL signal never came"
    # The check: the cached copy again, which must cost no device read (field 3 of the stat file: sectors read).
    s0=$(awk '{print $3}' /sys/block/$name/stat)
    got=$(read_sha "$lfoff" "$lflen" buffered)
    rd=$(($(awk '{print $3}' /sys/block/$name/stat) - s0))
    [ "$rd" -lt $((lflen / 512 / 8)) ] ||
      fail "late fill: inconclusive: $rd sectors of $lfoff+$lflen were read from the device again (no longer cached)"
    [ "$got" = "$lfsha" ] ||
      fail "late fill: the page-cache copy of $lfoff+$lflen differs from what the device wrote into it (sha256 $got): a write the migration did not carry over"
    info "late fill: the page-cache copy of $lfoff+$lflen is intact ($rd sectors read again)"
    exec 9<&-
  fi
  if [ -n "$probe" ]; then
    : >/tmp/qdprobe.stop; wait "$probe"
    read -r mx ns </tmp/qdprobe.max
    echo "TESTBED-INFLIGHT max=$mx samples=$ns"
  fi
  v=$((ROUNDS % 2))
  drop_caches
  k=0
  while [ "$k" -lt "$JOBS" ]; do
    check_region "S$k" $((base + k * LEN)) "$LEN" "$(cat /tmp/want.s$v.p$k)"
    if [ $((k % 2)) -eq 0 ]; then how=direct; else how=buffered; fi
    echo "TESTBED-REGION name=S$k off=$((base + k * LEN)) len=$LEN seed=$SEED-s$v-p$k sha256=$(cat /tmp/want.s$v.p$k) io=$how"
    rm -f /tmp/pat.s0.p$k /tmp/pat.s1.p$k
    k=$((k + 1))
  done
}

# resize: the host grows the image while the guest runs; the new size must arrive without a reboot
# (a config-change interrupt), and the new last MiB must be usable.
mode_resize() {
  echo "TESTBED-RESIZE-WAIT size=$SIZE"
  n=0
  while [ "$(($(cat /sys/block/$name/size) * 512))" -eq "$SIZE" ]; do
    n=$((n + 1)); [ "$n" -gt 600 ] && fail "the disk size stayed $SIZE for 60 s (no config change seen)"
    usleep 100000
  done
  NEW=$(($(cat /sys/block/$name/size) * 512))
  echo "TESTBED-RESIZE size=$NEW"
  [ "$NEW" -gt "$SIZE" ] || fail "the disk shrank to $NEW instead of growing"
  write_region RZ $((NEW - M)) "$M" "$SEED-rz" direct
  check_region RZ $((NEW - M)) "$M" "$(grep '^RZ ' /tmp/regions | cut -d' ' -f5)"
  print_regions
}

# discard: a written region that is discarded reads back as zeros; the host then checks for a hole.
mode_discard() {
  off=$((8 * M)); len=$((2 * M))
  write_region DZ "$off" "$len" "$SEED-dz" direct
  blkdiscard -o "$off" -l "$len" "$DEV" || fail "blkdiscard $off+$len failed"
  want=$(head -c "$len" /dev/zero | sha256sum | cut -d' ' -f1)
  drop_caches
  got=$(read_sha "$off" "$len" direct)
  [ "$got" = "$want" ] || fail "discarded region $off+$len does not read back as zeros"
  echo "TESTBED-DISCARD off=$off len=$len"
  grep -v '^DZ ' /tmp/regions >/tmp/regions.new 2>/dev/null; mv /tmp/regions.new /tmp/regions
}

t0=$(cut -d' ' -f1 /proc/uptime)
for mode in $(echo "$MODES" | tr ',' ' '); do
  case "$mode" in
    rw) check_verify_list; mode_rw ;;
    ro) mode_ro ;;
    parallel) mode_parallel ;;
    soak) mode_soak ;;
    resize) mode_resize ;;
    discard) mode_discard ;;
    *) fail "unknown testbed.mode $mode" ;;
  esac
done
t1=$(cut -d' ' -f1 /proc/uptime)
info "done: modes $MODES in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')s (guest uptime $t1 s)"
exit 0
