#!/usr/bin/env bash
# Real-guest interop tests of OUR vhost-user-blk back-end (virtio-sharp vhost-user-blk,
# Release build) against QEMU's vhost-user-blk-pci and the Linux virtio_blk driver.
# Each case creates a raw image with a host-written region, starts the back-end on a
# unix socket, boots the testbed guest (run-guest.sh) on it, and checks on the host, from
# the image file, every region the guest claims to have written. The rng* cases do the
# same for our vhost-user-rng back-end (virtio-sharp vhost-user-rng) and the Linux
# virtio_rng driver: the guest (guest-rng-test.sh) reads 1 MiB from /dev/hwrng and the host
# compares its byte count with the back-end's "final stats:" bytes-served.
#
#   bash scripts/testbed/interop.sh                      # every case
#   bash scripts/testbed/interop.sh modern viommu ro     # some cases
#
# Cases:
#   modern    vhost-user-blk-pci disable-legacy=on; guest mode rw
#   packed    the same with packed=on: the guest negotiates RING_PACKED (bit 34) and the back-end serves a packed ring
#   viommu    intel-iommu (device-iotlb=on) + the device behind a PCIe root port with
#             iommu_platform=on,ats=on, guest intel_iommu=on; guest mode rw; the back-end's
#             final stats must show IOTLB misses > 0 and hits > 0 (it translated IOVAs)
#   swiotlb   iommu_platform=on without a vIOMMU, guest swiotlb=force (the guest bounces);
#             guest mode rw; the guest must have negotiated ACCESS_PLATFORM
#   legacy    transitional device in legacy mode (disable-modern=on,disable-legacy=off);
#             guest mode rw; the guest must NOT have negotiated VERSION_1
#   mq        --num-queues 4, num-queues=4, -smp 4, guest mode parallel with 4 queues
#   reconnect chardev reconnect=1; guest mode soak; the back-end is killed (SIGKILL) in the
#             middle of the guest's I/O and restarted on the same socket; the guest
#             must finish without an error and the data must be in the image
#   reconnect-viommu  reconnect with the viommu device setup (IOTLB refilled after the restart)
#   reconnect-packed  reconnect with packed=on: the restarted back-end takes the ring position
#             and the requests in flight from the packed inflight region (QEMU's base is stale)
#   resubmit  crash recovery with requests in flight: reconnect with the back-end started with the
#             fault injection --inject-delay-us RESUBMIT_DELAY_US (every request held, in flight and
#             unprocessed, before it is completed) and a guest that keeps many requests in flight (soak
#             with one O_DIRECT dd per region, max_sectors_kb 64); SIGKILL as soon as the back-end logs
#             that it holds >= RESUBMIT_MIN (8) requests; the restarted back-end (no injection) must
#             resubmit >= RESUBMIT_MIN requests from the inflight region, the guest must finish without
#             an I/O error and the image must hold the last round
#   resubmit-packed, resubmit-viommu, resubmit-packed-viommu  resubmit with packed=on, with the
#             viommu device setup, and with both
#   ro        --read-only; guest mode ro (writes fail with EPERM), image unchanged
#   libvirt   modern, but the guest is a libvirt domain (private libvirtd, QEMU driver, TCG) with
#             <disk type='vhostuser'> on our socket and <memoryBacking> memfd + shared
#             (run-libvirt-guest.sh; the domain XML is kept in the case's directory as domain.xml)
#   qsd       the same guest script against qemu-storage-daemon (qsd-reference.sh rw ro mq)
#   migrate   live migration: a source QEMU on our back-end runs the guest's soak loop (continuous verified
#             write + O_DIRECT read rounds); a destination QEMU (-incoming unix:... -S) waits on a second back-end
#             process serving the same image; once the guest's I/O runs, qmp-migrate.py migrates it over the
#             source's QMP socket and quits the source. After QEMU's first pass over RAM the migration is held
#             (MIGRATE_HOLD s at 1/32 of the bandwidth, 1 ms downtime limit) and qmp-migrate.py writes LATEFILL into
#             the image: the guest (testbed.latefill) then reads 12 MiB of host-written random bytes into its page
#             cache, pages filled only by the device's DMA after QEMU sent them, which reach the destination only
#             through the back-end's dirty log; the hold ends when the guest reports the fill. Asserted: the
#             migration completed; the destination's RAM, loaded and still paused, equals the stopped source's page for
#             page (MEMCOMPARE differ=0); the guest finishes its loop on the destination (at least one round verified
#             there) with no I/O error and finds its cached 12 MiB intact without reading the device again; the
#             image holds its data; the source back-end logged at least the late fill's pages (dirty-pages >= 3072);
#             no protocol error. QEMU refuses to migrate a vhost-user device without VHOST_F_LOG_ALL.
#   migrate-packed  migrate with packed=on
#   migrate-mq4  migrate with 4 queues (-smp 4, testbed.jobs=4, MIGRATE_MQ4_ROUNDS rounds, default 20; the guest
#             must see 4 queues)
#   migrate-viommu  migrate under the vIOMMU: intel-iommu, the device behind a PCIe root port with
#             iommu_platform=on but WITHOUT ATS, guest intel_iommu=on iommu.strict=1, -machine sata=off (QEMU 7.2
#             cannot load q35's unconfigured AHCI under intel-iommu). Both back-ends translate every ring and buffer
#             address through their IOTLB: ACCESS_PLATFORM negotiated, iotlb-misses and iotlb-invalidations > 0 on
#             both sides (the destination refills its IOTLB from nothing), plus the migrate checks. Why no ATS:
#             Debian's QEMU 7.2 registers vhost's IOTLB notifier as DEVIOTLB_UNMAP only while the guest has ATS
#             enabled on the device (vhost.c vhost_iommu_region_add: vdev->device_iotlb_enabled ? DEVIOTLB_UNMAP :
#             UNMAP; set only by the guest's write to the ATS control register, virtio-pci's ATS trigger). That flag
#             is not migrated, so the destination registers UNMAP notifiers split around the MSI window
#             ([0, 0xfedfffff] and [0xfef00000, ~0]); the guest's first device-IOTLB flush (iova 0, mask ~0) then
#             reaches them uncropped and the destination aborts on memory.c memory_region_notify_iommu_one's
#             assert(entry->iova >= notifier->start && entry_end <= notifier->end) (seen under gdb). Why strict:
#             without ATS, QEMU 7.2's intel-iommu forwards only page-selective IOTLB invalidations to UNMAP notifiers
#             (domain and global ones reach them from QEMU 8.0, "intel-iommu: send UNMAP notifications for domain
#             or global inv desc"), and a lazy guest flushes by domain: the back-ends kept stale translations (a
#             NestedIndirect reset on the source). iommu.strict=1 makes the guest invalidate each unmap by page.
#   migrate-nolog  the migrate cases can fail: migrate with the source back-end started with --inject-no-dirty-log
#             (LOG_ALL offered, nothing logged). Passes only if the destination's RAM differs from the stopped
#             source's (MEMCOMPARE differ > 0: about 2800 pages here) AND the guest's own late-fill check fails on
#             the destination ("the page-cache copy ... differs"). Before the late fill (a page-cache check of a few
#             pages, refilled every second) neither happened: Linux drops a block device's page cache when its last
#             opener closes it, and fills mostly landed in pages the CPU had just dirtied (QEMU re-sent them anyway).
#   migrate-net  live migration of a virtio-net guest: two QEMUs (-incoming unix:... -S on the destination), two
#             `vhost-user-net --tap` back-end processes run in a network namespace holding a bridge (10.77.0.1/24)
#             whose ports are their two persistent TAPs. The guest (guest-net-test.sh, testbed.role=serve,
#             testbed.ipv6=0) serves MIGRATE_NET_BYTES random bytes and answers pings; the namespace pings it every
#             MIGRATE_NET_PING_MS (net-pinger.py) while qmp-migrate.py migrates it (--compare, --hold). The namespace
#             has the guest's MAC as a permanent neighbour and the guest sends nothing on its own, so after the
#             switchover only an announcement moves the bridge's entry for the guest to the destination's TAP: QEMU
#             asks for one with VHOST_USER_SEND_RARP (our back-end offers VHOST_USER_PROTOCOL_F_RARP and broadcasts a
#             RARP from the guest's MAC). Then the namespace downloads the bytes over TCP. Passes when the migration
#             completed, the destination's RAM equals the stopped source's (MEMCOMPARE differ=0), the source back-end
#             logged dirty pages, pings were answered after the source quit (>= 25) and the pings lost fit in the
#             pause (source stopped .. destination continued: downtime + the MEMCOMPARE time) plus MIGRATE_NET_SLACK_MS,
#             the download matches the sha256 the guest printed, the guest passes on the destination, the destination
#             back-end sent a RARP (rarp-sent > 0) and moved frames, and neither back-end reports a protocol error or a
#             handler fault. Without the RARP the bridge keeps sending to the old TAP and no ping is answered on the
#             destination for 20 s or more (the guest's own ARP refresh): the case fails.
#   rng       vhost-user-rng-pci (modern-only in QEMU 7.2: no disable-legacy property) on
#             `vhost-user-rng --socket-path SOCK`; the guest
#             reads RNG_BYTES (1 MiB) from /dev/hwrng (data not constant, VERSION_1 negotiated);
#             bytes-served >= the guest's bytes and <= them + RNG_SLACK (4096; the kernel's own
#             64-byte reads), requests > 0, connections >= 1, protocol-errors 0 if reported
#   rng-viommu  rng with the viommu device setup (intel-iommu device-iotlb=on, root port,
#             iommu_platform=on,ats=on, guest intel_iommu=on): also ACCESS_PLATFORM negotiated
#             and iotlb-misses > 0 in the final stats
#   rng-ratelimit  rng with --max-bytes-per-second 262144: the guest's dd of 1 MiB must take
#             RNG_MIN_MS..RNG_MAX_MS (3000..12000 ms; 4 s nominal, up to 1 s of burst allowed)
#   rng-qemu, rng-qemu-ratelimit  references: the same guest and checks against QEMU's own
#             virtio-rng-pci (rng-egd fed by egd-counter.py, which counts the bytes it serves);
#             the ratelimit one with QEMU's max-bytes=262144,period=1000
#   net       `vhost-user-net --tap TAP` (the back-end creates the TAP; the case moves it into a
#             network namespace of its own, 10.77.0.1/24, with a busybox nc server sending
#             NET_BYTES of random data) and -netdev vhost-user + virtio-net-pci; the guest
#             (guest-net-test.sh) sets 10.77.0.2/24, pings the namespace, downloads the data and
#             checks its sha256; the back-end's final stats must count the packets both ways.
#             virtio-net-pci gets vectors=0 (INTx): QEMU 7.2 under TCG segfaults in
#             msix_set_vector_notifiers from vhost_net_start with MSI-X (before any ring starts)
#   net-packed  the same with packed=on (RING_PACKED negotiated)
#   net-viommu  net under the vIOMMU (intel-iommu device-iotlb=on, root port, iommu_platform=on,ats=on,
#             guest intel_iommu=on): ACCESS_PLATFORM negotiated and iotlb-misses > 0
#   net-mq    --queue-pairs 2, queues=2 and mq=on, -smp 2: the guest must see 2 rx queues
#   net-switch  two guests (two QEMUs, MACs ...:01 and ...:02) on ONE back-end process:
#             `vhost-user-net --switch SW --socket-path A --socket-path B` (the built-in L2 switch, no kernel
#             networking). Guest B (testbed.role=serve) serves NET_BYTES random bytes with busybox nc and prints
#             their sha256; guest A (10.78.0.1) pings B (10.78.0.2), downloads them and prints the sha256 it got;
#             both must pass, the two sums must match, and the back-end's per-port final stats must show A's
#             port receiving >= NET_BYTES and B's port sending >= NET_BYTES, floods (ARP) on both, no errors
#   net-reconnect  back-end restart for net: the TAP is made persistent in the case's namespace and the back-end
#             runs there (ip netns exec); QEMU's chardev has reconnect=1; the guest (testbed.role=loop) downloads
#             and verifies NET_BYTES NET_RECONNECT_ROUNDS times; once it has verified NET_KILL_AFTER_ROUND rounds the
#             back-end is SIGKILLed and started again. The guest must finish every round (at least one after the
#             restart), must have seen the link go down (carrier_down_count: QEMU takes the link down when the
#             back-end goes and up when it is back; net has no inflight state), and the new back-end must have
#             served a whole round (rx-bytes >= NET_BYTES) with no protocol error
#
# Environment: GUEST_TIMEOUT (s, default 180) per guest run; migrate*: MIGRATE_ROUNDS (soak rounds,
# default 40; migrate-mq4: MIGRATE_MQ4_ROUNDS, default 20), MIGRATE_AFTER_ROUND (rounds verified on the source before the migration starts, default 2),
# MIGRATE_TIMEOUT (s the migration may take, default 120), MIGRATE_ACCEL (run-guest.sh --accel for both QEMUs,
# default tcg,thread=single), MIGRATE_BANDWIDTH (bytes/s, default 32 MiB/s: the guest's I/O goes on while its RAM
# is copied), MIGRATE_BACKEND_ARGS (extra options for both back-ends,
# for diagnosis, e.g. "--log-level Trace"); reconnect: RECONNECT_ROUNDS
# (soak rounds, default 24), KILL_AFTER_ROUND (kill the back-end once the guest has verified
# that many rounds, default 4), RECONNECT_QUEUES (default 1; N > 1 runs it with N queues,
# -smp N and N soak jobs); resubmit*: RESUBMIT_DELAY_US (injected hold per request, default
# 1000000), RESUBMIT_MIN (requests held at the kill and resubmitted after it, default 8),
# RESUBMIT_ROUNDS (default 8), RESUBMIT_KILL_AFTER (soak rounds verified before the kill is armed,
# default 1); net*: NET_BYTES (default 4194304); net-reconnect: NET_RECONNECT_ROUNDS (default 8),
# NET_KILL_AFTER_ROUND (default 2); migrate-net: MIGRATE_NET_PING_MS (default 20), MIGRATE_NET_SLACK_MS (default 3000),
# MIGRATE_NET_BYTES (default 2097152), and MIGRATE_TIMEOUT / MIGRATE_ACCEL / MIGRATE_BANDWIDTH / MIGRATE_HOLD /
# MIGRATE_BACKEND_ARGS as for migrate*; rng: RNG_BYTES (default 1048576), RNG_SLACK (default 4096),
# RNG_MIN_MS / RNG_MAX_MS (ratelimit, default 3000 / 12000), RNG_TEST_TIMEOUT (the guest
# test's own limit, default 60 s), RNG_DEV_OPTS (appended to the QEMU device, for diagnosis,
# e.g. ",indirect_desc=off"); INTEROP_NO_BUILD=1 skips the
# staleness check of the Release build; VIRTIO_SHARP_BIN=PATH runs our back-ends as that executable (e.g. the
# virtio-sharp dotnet tool as installed: `dotnet tool install --tool-path DIR virtio-sharp`) instead of the Release
# build, which is then neither built nor checked.
# Logs, images: .testbed/interop/<case>/. Exit 0 only if every requested case passes.
set -euo pipefail
source "$(dirname "$0")/common.sh"
exec </dev/null

ALL_CASES=(modern libvirt packed viommu swiotlb legacy mq reconnect reconnect-viommu reconnect-packed
  resubmit resubmit-packed resubmit-viommu resubmit-packed-viommu ro cache-none nbd nbd-restart resize discard qsd
  migrate migrate-packed migrate-mq4 migrate-viommu migrate-nolog rng rng-viommu rng-ratelimit rng-qemu rng-qemu-ratelimit net net-packed
  net-viommu net-mq net-switch net-reconnect migrate-net)
# Cases run only when named (none at present: every case runs by default).
EXTRA_CASES=()
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=("${ALL_CASES[@]}")
for c in "${cases[@]}"; do
  case " ${ALL_CASES[*]} ${EXTRA_CASES[*]} " in *" $c "*) ;; *) tb_die "unknown case $c (${ALL_CASES[*]} ${EXTRA_CASES[*]})" ;; esac
done

IMG_SIZE=64M
PREFILL_OFF=$((40 * 1048576))
PREFILL_LEN=1048576
GUEST_TIMEOUT="${GUEST_TIMEOUT:-180}"
KILL_AFTER_ROUND="${KILL_AFTER_ROUND:-4}"
RECONNECT_ROUNDS="${RECONNECT_ROUNDS:-24}"
RECONNECT_QUEUES="${RECONNECT_QUEUES:-1}"
RESUBMIT_DELAY_US="${RESUBMIT_DELAY_US:-1000000}"
RESUBMIT_MIN="${RESUBMIT_MIN:-8}"
RESUBMIT_ROUNDS="${RESUBMIT_ROUNDS:-8}"
RESUBMIT_KILL_AFTER="${RESUBMIT_KILL_AFTER:-1}"
HELD_LINE='fault injection: vring [0-9]* holds [0-9]* requests'
MIGRATE_ROUNDS="${MIGRATE_ROUNDS:-40}"
MIGRATE_MQ4_ROUNDS="${MIGRATE_MQ4_ROUNDS:-20}"
MIGRATE_AFTER_ROUND="${MIGRATE_AFTER_ROUND:-2}"
MIGRATE_TIMEOUT="${MIGRATE_TIMEOUT:-120}"
MIGRATE_ACCEL="${MIGRATE_ACCEL:-tcg,thread=single}"
MIGRATE_BANDWIDTH="${MIGRATE_BANDWIDTH:-33554432}"
LATEFILL_MARK=$((49 * 1048576))   # migrate*: where qmp-migrate.py --signal writes LATEFILL for the guest
LATEFILL_OFF=$((52 * 1048576)) LATEFILL_LEN=$((12 * 1048576))   # host-written region the guest fills late (64M image)
MIGRATE_HOLD="${MIGRATE_HOLD:-4}"   # seconds of iterating after the first pass (qmp-migrate.py --hold)
restart_args=()
OUT="$TESTBED_DIR/interop"
DLL="$TESTBED_REPO/src/VirtioSharp.Cli/bin/Release/net10.0/virtio-sharp.dll"

bash "$TESTBED_SCRIPTS/setup.sh"
initrd="$TESTBED_DEFAULT_INITRD"
bash "$TESTBED_SCRIPTS/build-initramfs.sh" "$TESTBED_SCRIPTS/guest-blk-test.sh" "$initrd"
bash "$TESTBED_SCRIPTS/build-initramfs.sh" "$TESTBED_SCRIPTS/guest-rng-test.sh" "$TESTBED_DIR/initramfs-rng.cpio.gz"
bash "$TESTBED_SCRIPTS/build-initramfs.sh" "$TESTBED_SCRIPTS/guest-net-test.sh" "$TESTBED_DIR/initramfs-net.cpio.gz"

# Our back-end: VIRTIO_SHARP_BIN as given, or the Release build (built here if missing or older than the sources).
if [ -n "${VIRTIO_SHARP_BIN:-}" ]; then
  [ -x "$VIRTIO_SHARP_BIN" ] || tb_die "VIRTIO_SHARP_BIN=$VIRTIO_SHARP_BIN is not an executable file"
  BACKEND=("$VIRTIO_SHARP_BIN")
  tb_log "back-end: $VIRTIO_SHARP_BIN ($("$VIRTIO_SHARP_BIN" --version))"
else
  need_build=0
  if [ ! -f "$DLL" ]; then need_build=1
  elif [ "${INTEROP_NO_BUILD:-0}" != 1 ] &&
       [ -n "$(find "$TESTBED_REPO/src" \( -name '*.cs' -o -name '*.csproj' \) -newer "$DLL" -print -quit)" ]; then need_build=1
  fi
  if [ "$need_build" -eq 1 ]; then
    tb_log "building the back-end: dotnet build src/VirtioSharp.Cli -c Release"
    timeout 600 dotnet build "$TESTBED_REPO/src/VirtioSharp.Cli" -c Release -nologo -v q >&2 || tb_die "dotnet build failed"
  fi
  [ -f "$DLL" ] || tb_die "no $DLL after the build"
  BACKEND=(dotnet "$DLL")
fi

sockdir="$(mktemp -d "${TMPDIR:-/tmp}/vstb-io.XXXXXX")"   # unix socket paths must stay short
backend_pid=""
guest_pid=""
nbd_pid=""
dest_pid=""
dest_backend_pid=""
netns=""
server_pid=""
trap 'tb_stop guest_pid 5; tb_stop dest_pid 5; tb_stop backend_pid 10; tb_stop dest_backend_pid 10; tb_stop nbd_pid 5; tb_stop server_pid 5; [ -z "$netns" ] || ip netns del "$netns" 2>/dev/null; rm -rf "$sockdir"' EXIT

# start_backend LOG ARGS...: our back-end on $sock serving $img (PID in backend_pid)
start_backend() {
  local log="$1"; shift
  local cmd=("${BACKEND[@]}" vhost-user-blk --socket-path "$sock" "${target[@]}" "$@")
  { printf '[testbed] %s: backend:' "$c"; printf ' %q' "${cmd[@]}"; echo; } >&2
  rm -f "$sock"
  tb_start backend_pid "$log" timeout -k 5 $((GUEST_TIMEOUT + 120)) "${cmd[@]}"
  tb_wait_socket "$sock" "$backend_pid" "$log" 60
}

# start_counters METERS: with TESTBED_COUNTERS=PATH (a dotnet-counters executable), collect the back-end's meters
# once a second while the guest runs, into <case>/counters.csv (InteropTests asserts on it). The session ends, and
# dotnet-counters saves the file, when the back-end exits; stop_counters waits for that (bounded).
start_counters() {
  counters_pid=""
  [ -n "${TESTBED_COUNTERS:-}" ] || return 0
  local target
  target="$(pgrep -P "$backend_pid" | head -n1)"   # backend_pid is the timeout wrapper
  if [ -z "$target" ]; then tb_log "$c: no back-end process to collect counters from"; return 0; fi
  tb_start counters_pid "$dir/counters.log" timeout -k 5 $((GUEST_TIMEOUT + 60)) "$TESTBED_COUNTERS" collect -p "$target" \
    --counters "$1" --refresh-interval 1 --duration 00:00:30:00 --format csv -o "$dir/counters.csv"
}

stop_counters() {
  [ -n "${counters_pid:-}" ] || return 0
  for _ in $(seq 300); do kill -0 "$counters_pid" 2>/dev/null || break; sleep 0.1; done
  tb_stop counters_pid 5
}

# final_stat LOG KEY: a counter from the back-end's "final stats:" line (empty if none)
final_stat() {
  grep -a 'final stats:' "$1" 2>/dev/null | tail -n1 | tr ' ' '\n' | grep -a -A1 -x -- "$2" | tail -n1 | tr -dc 0-9
}

# guest_feature LOG BIT: the guest's view of one negotiated feature bit (0/1)
guest_feature() {
  local f
  f="$(tr -d '\r' <"$1" | grep -a -m1 '^TESTBED-DISK ' | sed -n 's/.*features=\([01]*\).*/\1/p')"
  echo "${f:$2:1}"
}

# run_guest APPEND QEMU_ARGS...: boot the guest in the background (PID in guest_pid)
run_guest() {
  local append="$1"; shift
  tb_start guest_pid "$dir/run-guest.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" \
    --initrd "$initrd" --log "$glog" --append "$append" -- "$@"
}
# wait_guest_line PATTERN: wait until the guest's log ($glog) has a line matching PATTERN; 1 if the guest ends first
# or GUEST_TIMEOUT passes
wait_guest_line() {
  local w=0
  until tr -d '\r' 2>/dev/null <"$glog" | grep -aq -- "$1"; do
    kill -0 "$guest_pid" 2>/dev/null || return 1
    w=$((w + 1)); [ "$w" -le $((GUEST_TIMEOUT * 20)) ] || return 1
    sleep 0.05
  done
}
wait_guest() {  # sets grc
  set +e; wait "$guest_pid"; grc=$?; set -e
  guest_pid=""
  cat "$dir/run-guest.out" >&2
}

# reconnect: SIGKILL the back-end in the middle of the guest's I/O (once it has verified
# KILL_AFTER_ROUND soak rounds, so the timing does not depend on the machine's speed),
# then restart it on the same socket
# resubmit: after that, wait until the back-end (--inject-delay-us) logs a new "holds N requests"
# line and kill it at once: the requests it holds stay in flight for RESUBMIT_DELAY_US (1 s), so the
# kill lands while they are popped, recorded in the inflight region and not used.
kill_and_restart() {
  local n=0 after="$KILL_AFTER_ROUND"
  [ "$kind" = resubmit ] && after="$RESUBMIT_KILL_AFTER"
  until tr -d '\r' 2>/dev/null <"$glog" | grep -aq "soak: round $after/"; do
    kill -0 "$guest_pid" 2>/dev/null || { tb_log "$c: guest ended before soak round $after"; return 1; }
    n=$((n + 1)); [ "$n" -le $((GUEST_TIMEOUT * 20)) ] || { tb_log "$c: guest never reached soak round $after"; return 1; }
    sleep 0.05
  done
  local child
  child="$(pgrep -P "$backend_pid" || true)"   # the dotnet process under timeout(1)
  [ -n "$child" ] || { tb_log "$c: back-end process not found under PID $backend_pid"; return 1; }
  if [ "$kind" = resubmit ]; then
    local seen
    seen="$(grep -ac "$HELD_LINE" "$dir/backend-1.log" || true)"
    n=0
    until [ "$(grep -ac "$HELD_LINE" "$dir/backend-1.log" || true)" -gt "$seen" ]; do
      kill -0 "$guest_pid" 2>/dev/null || { tb_log "$c: guest ended before the back-end held $RESUBMIT_MIN requests again"; return 1; }
      n=$((n + 1)); [ "$n" -le $((GUEST_TIMEOUT * 50)) ] || { tb_log "$c: the back-end never held $RESUBMIT_MIN requests"; return 1; }
      sleep 0.02
    done
  fi
  if tr -d '\r' <"$glog" | grep -aq -e '^TESTBED-RESULT' -e '^TESTBED-REGION'; then
    tb_log "$c: the guest's I/O was already over when the back-end was to be killed (raise testbed.rounds)"; return 1
  fi
  kill -KILL "$child"
  local killed_at held_msg=""
  killed_at="$(date +%T.%3N)"
  # the back-end's line starts with its own HH:MM:SS.mmm, so the log shows how much of the hold was left
  [ "$kind" = resubmit ] && held_msg="$(grep -a "$HELD_LINE" "$dir/backend-1.log" | tail -n1 | sed 's/ warn: .*fault injection: / /') (killed at $killed_at)"
  tb_log "$c: guest I/O running ($(tr -d '\r' <"$glog" | grep -ac 'soak: round') rounds done); killed back-end $child (kill -9)${held_msg:+ after: $held_msg}"
  set +e; wait "$backend_pid"; set -e
  backend_pid=""
  echo "killed by the test (SIGKILL) at $(date +%T.%3N)" >>"$dir/backend-1.log"
  sleep 0.5
  start_backend "$dir/backend-2.log" "${restart_args[@]}"
  tb_log "$c: back-end restarted on $sock"
}

# resubmit*: the kill found requests in flight and the restarted back-end replayed them. Prints
# PASS or FAIL (why). The guest's I/O errors, the image and the reconnect are checked as for reconnect.
check_resubmitted() {
  local res held lines inflight
  res="$(final_stat "$dir/backend-2.log" resubmitted)"
  held="$(grep -a "$HELD_LINE" "$dir/backend-1.log" | tail -n1 | sed -n 's/.* holds \([0-9]*\) requests.*/\1/p')"
  lines="$(grep -a 'resubmitting [0-9]* in-flight requests' "$dir/backend-2.log" | sed 's/.*\(vring .*\)/\1/' | tr '\n' ';')"
  inflight="$(tr -d '\r' <"$glog" | grep -a -m1 '^TESTBED-INFLIGHT ' | sed -n 's/.*max=\([0-9]*\).*/\1/p')"
  tb_log "$c: guest had at most ${inflight:-?} requests in flight; killed back-end held ${held:-?}; restarted back-end: resubmitted ${res:-?} (${lines:-no resubmitting line})"
  if [ -z "$res" ] || [ "$res" -le 0 ]; then echo "FAIL (resubmitted ${res:-?}: the kill found nothing in flight, or the restart replayed nothing)"
  elif [ "$res" -lt "$RESUBMIT_MIN" ]; then echo "FAIL (resubmitted $res, fewer than the $RESUBMIT_MIN the killed back-end held)"
  elif [ -z "$lines" ]; then echo "FAIL (no 'resubmitting N in-flight requests' line in backend-2.log)"
  elif [ "$(guest_feature "$glog" 33)" != "$(case "$c" in *viommu) echo 1 ;; *) echo 0 ;; esac)" ]; then echo "FAIL (ACCESS_PLATFORM negotiated $(guest_feature "$glog" 33), not as the case wants)"
  elif [ "$(guest_feature "$glog" 34)" != "$(case "$c" in resubmit-packed*) echo 1 ;; *) echo 0 ;; esac)" ]; then echo "FAIL (RING_PACKED negotiated $(guest_feature "$glog" 34), not as the case wants)"
  else echo PASS; fi
}

run_case() {
  dir="$OUT/$c"
  rm -rf "$dir"; mkdir -p "$dir"
  img="$dir/disk.img"; sock="$sockdir/$c.sock"; glog="$dir/guest.log"; blog="$dir/backend.log"
  seed="host-$c"
  local append="testbed.verify=$PREFILL_OFF:$PREFILL_LEN:$seed testbed.seed=$c testbed.timeout=$((GUEST_TIMEOUT - 20))"
  local bargs=() qargs=() chardev="socket,id=c0,path=$sock" dev="vhost-user-blk-pci,chardev=c0,disable-legacy=on"
  local kind="$c" target=(--blk-file "$img") nbdsock="$sockdir/$c.nbd"
  case "$c" in reconnect-viommu) kind=reconnect ;; resubmit*) kind=resubmit ;; esac
  if [ "$c" = reconnect-viommu ] || [ "$c" = resubmit-viommu ] || [ "$c" = resubmit-packed-viommu ]; then
    append="intel_iommu=on $append"
    qargs=(-device intel-iommu,intremap=off,device-iotlb=on -device pcie-root-port,id=rp0,bus=pcie.0,chassis=1)
    dev="vhost-user-blk-pci,chardev=c0,bus=rp0,disable-legacy=on,iommu_platform=on,ats=on"
  fi
  if [ "$c" = reconnect-packed ]; then kind=reconnect; dev="$dev,packed=on"; fi
  case "$c" in resubmit-packed*) dev="$dev,packed=on" ;; esac
  case "$kind" in
    modern|libvirt) append="testbed.mode=rw testbed.mib=2 $append" ;;
    packed) append="testbed.mode=rw testbed.mib=2 $append"; dev="$dev,packed=on" ;;
    viommu)
      append="intel_iommu=on testbed.mode=rw testbed.mib=2 $append"
      # ATS behind a PCIe root port: QEMU 7.2 only forwards IOTLB invalidations to a vhost-user
      # back-end for device-IOTLB (ATS) invalidations, which Linux issues only for a PCIe
      # device with ATS enabled (an integrated endpoint on pcie.0 gets none; the guest hangs).
      qargs=(-device intel-iommu,intremap=off,device-iotlb=on -device pcie-root-port,id=rp0,bus=pcie.0,chassis=1)
      dev="vhost-user-blk-pci,chardev=c0,bus=rp0,disable-legacy=on,iommu_platform=on,ats=on" ;;
    swiotlb)
      append="swiotlb=force testbed.mode=rw testbed.mib=2 $append"
      dev="$dev,iommu_platform=on" ;;
    legacy)
      append="testbed.mode=rw testbed.mib=2 $append"
      dev="vhost-user-blk-pci,chardev=c0,disable-modern=on,disable-legacy=off" ;;
    mq)
      append="testbed.mode=parallel testbed.minqueues=4 testbed.mib=2 $append"
      bargs=(--num-queues 4); qargs=(-smp 4); dev="$dev,num-queues=4" ;;
    reconnect)
      local nq="$RECONNECT_QUEUES" jobs=2
      [ "$nq" -le 1 ] || { jobs="$nq"; qargs+=(-smp "$nq"); dev="$dev,num-queues=$nq"; }
      append="testbed.mode=soak testbed.jobs=$jobs testbed.mib=4 testbed.rounds=$RECONNECT_ROUNDS $append"
      chardev="$chardev,reconnect=1"; blog="$dir/backend-1.log"
      restart_args=(--num-queues "$nq"); bargs=(--stats-interval 1 "${restart_args[@]}") ;;
    resubmit)
      # One O_DIRECT dd per 2 MiB region (bs = the region) split into 64 KiB requests: 32 in flight
      # per job at once, which the injected delay keeps in the back-end. The restarted back-end
      # runs without the injection, so the rest of the soak is quick.
      append="testbed.mode=soak testbed.jobs=2 testbed.mib=2 testbed.bs=2097152 testbed.maxkb=64 testbed.qdprobe=1 testbed.rounds=$RESUBMIT_ROUNDS $append"
      chardev="$chardev,reconnect=1"; blog="$dir/backend-1.log"
      restart_args=(--stats-interval 1)
      bargs=(--stats-interval 1 --inject-delay-us "$RESUBMIT_DELAY_US" --inject-report-held "$RESUBMIT_MIN") ;;
    ro)
      append="testbed.mode=ro $append"; bargs=(--read-only) ;;
    cache-none)
      # O_DIRECT on the image (the repo's disk, not tmpfs) through io_uring, two queues.
      append="testbed.mode=rw,parallel testbed.minqueues=2 testbed.mib=2 $append"
      bargs=(--cache none --aio io_uring --num-queues 2); qargs=(-smp 2); dev="$dev,num-queues=2" ;;
    nbd)
      # The image is served by qemu-nbd; the back-end is its NBD client.
      append="testbed.mode=rw,parallel testbed.mib=2 $append"
      target=(--blk-nbd "nbd+unix:///?socket=$nbdsock") ;;
    nbd-restart)
      # qemu-nbd is killed in the middle of the guest's I/O and started again a second later: the client
      # reconnects and re-sends, and the guest sees no error.
      append="testbed.mode=soak testbed.jobs=2 testbed.mib=4 testbed.rounds=12 $append"
      target=(--blk-nbd "nbd+unix:///?socket=$nbdsock") ;;
    resize)
      append="testbed.mode=resize $append"; bargs=(--watch-size) ;;
    discard)
      append="testbed.mode=rw,discard testbed.mib=2 $append" ;;
  esac

  tb_make_image "$img" "$IMG_SIZE" "$PREFILL_OFF" "$PREFILL_LEN" "$seed"
  local before t0 t1 secs r=PASS
  before="$(sha256sum <"$img" | cut -d' ' -f1)"

  t0=$(tb_now_ms)
  if [ "$c" = nbd ] || [ "$c" = nbd-restart ]; then
    rm -f "$nbdsock"
    tb_start nbd_pid "$dir/qemu-nbd.log" qemu-nbd --persistent --format=raw --discard=unmap --socket="$nbdsock" "$img"
    tb_wait_socket "$nbdsock" "$nbd_pid" "$dir/qemu-nbd.log" 30
  fi
  if ! start_backend "$blog" "${bargs[@]}"; then
    tb_record "$c" "FAIL (back-end did not start; $blog)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  start_counters VirtioSharp.Blk,VirtioSharp.VhostUser
  if [ "$kind" = libvirt ]; then
    tb_start guest_pid "$dir/run-guest.out" bash "$TESTBED_SCRIPTS/run-libvirt-guest.sh" --timeout "$GUEST_TIMEOUT" \
      --socket "$sock" --initrd "$initrd" --log "$glog" --append "$append" --xml-out "$dir/domain.xml"
  else
    run_guest "$append" "${qargs[@]}" -chardev "$chardev" -device "$dev"
  fi
  if [ "$c" = nbd-restart ]; then
    wait_guest_line 'soak: round 3/' || true
    kill -KILL "$nbd_pid" 2>/dev/null || true
    wait "$nbd_pid" 2>/dev/null || true
    tb_log "$c: qemu-nbd killed (kill -9) during the guest's I/O; restarting it in 1 s"
    sleep 1
    rm -f "$nbdsock"
    tb_start nbd_pid "$dir/qemu-nbd-2.log" qemu-nbd --persistent --format=raw --discard=unmap --socket="$nbdsock" "$img"
  fi
  if [ "$c" = resize ]; then
    # Grow the image once the guest has seen its first size: --watch-size must tell it.
    local w=0
    until tr -d '\r' 2>/dev/null <"$glog" | grep -aq '^TESTBED-RESIZE-WAIT'; do
      kill -0 "$guest_pid" 2>/dev/null || break
      w=$((w + 1)); [ "$w" -le $((GUEST_TIMEOUT * 20)) ] || break
      sleep 0.05
    done
    truncate -s 96M "$img"
    tb_log "$c: image grown to 96 MiB while the guest runs"
  fi
  if { [ "$kind" = reconnect ] || [ "$kind" = resubmit ]; } && ! kill_and_restart; then r="FAIL (kill/restart of the back-end)"; fi
  wait_guest
  t1=$(tb_now_ms)
  tb_stop backend_pid 10
  stop_counters
  tb_stop nbd_pid 5
  secs="$(tb_secs "$t0" "$t1")"
  case "$kind" in reconnect|resubmit) blog="$dir/backend-2.log" ;; esac
  tb_guest_lines "$glog" | sed "s/^/[guest $c] /" >&2
  grep -a -e 'final stats:' -e 'features:' -e 'resubmitting' -e 'inflight' -e 'fail' -e 'rror' "$dir"/backend*.log | sed "s/^/[backend $c] /" >&2 || true

  if [ "$r" != PASS ]; then :
  elif [ "$grc" -ne 0 ]; then r="FAIL (guest: run-guest.sh exit $grc)"
  elif ! grep -aq 'final stats:' "$blog"; then r="FAIL (no final stats line in $blog)"
  elif [ "$(final_stat "$blog" protocol-errors)" != 0 ]; then r="FAIL (back-end protocol errors)"
  elif [ "$(final_stat "$blog" handler-faults)" != 0 ]; then r="FAIL (back-end handler faults: an exception in a message handler)"
  elif [ "$c" = ro ]; then
    if [ "$(sha256sum <"$img" | cut -d' ' -f1)" != "$before" ]; then r="FAIL (image changed although every write failed)"
    elif ! tr -d '\r' <"$glog" | grep -aq '^TESTBED-RO ro_flag=1 '; then r="FAIL (guest did not see VIRTIO_BLK_F_RO)"
    else tb_log "$c: image unchanged (sha256 $before)"; fi
  else
    r="$(tb_check_written "$c" "$img" "$glog" "$PREFILL_OFF" "$PREFILL_LEN" "$seed")"
  fi
  if [ "$r" = PASS ]; then
    case "$c" in
      viommu|reconnect-viommu|resubmit-viommu|resubmit-packed-viommu)
        local hits misses
        hits="$(final_stat "$blog" iotlb-hits)"; misses="$(final_stat "$blog" iotlb-misses)"
        if [ "${misses:-0}" -le 0 ] || [ "${hits:-0}" -le 0 ]; then r="FAIL (IOTLB not used: hits ${hits:-?} misses ${misses:-?})"
        elif [ "$(guest_feature "$glog" 33)" != 1 ]; then r="FAIL (guest did not negotiate ACCESS_PLATFORM)"
        else tb_log "$c: back-end translated through the IOTLB: hits $hits misses $misses invalidations $(final_stat "$blog" iotlb-invalidations)"; fi ;;
    esac
  fi
  if [ "$r" = PASS ]; then
    case "$kind" in
      swiotlb)
        [ "$(guest_feature "$glog" 33)" = 1 ] || r="FAIL (guest did not negotiate ACCESS_PLATFORM)" ;;
      legacy)
        [ "$(guest_feature "$glog" 32)" = 0 ] || r="FAIL (guest negotiated VERSION_1: not a legacy device)" ;;
      modern|libvirt)
        [ "$(guest_feature "$glog" 32)" = 1 ] || r="FAIL (guest did not negotiate VERSION_1)" ;;
      cache-none)
        if ! grep -aq 'O_DIRECT' "$blog"; then r="FAIL (the back-end did not open the image with O_DIRECT)"
        elif ! grep -aq 'aio=io_uring' "$blog"; then r="FAIL (the back-end did not use io_uring)"
        elif [ "$(final_stat "$blog" errors)" != 0 ]; then r="FAIL (back-end I/O errors)"
        else tb_log "$c: O_DIRECT + io_uring; bounced (misaligned) requests $(final_stat "$blog" o-direct-bounced), copied $(final_stat "$blog" copied)"; fi ;;
      nbd-restart)
        if [ "$(final_stat "$blog" nbd-reconnects)" -lt 1 ]; then r="FAIL (the NBD client never reconnected)"
        elif [ "$(final_stat "$blog" nbd-failed)" != 0 ]; then r="FAIL (NBD requests failed across the restart)"
        elif [ "$(final_stat "$blog" errors)" != 0 ]; then r="FAIL (the guest got I/O errors)"
        else tb_log "$c: reconnects $(final_stat "$blog" nbd-reconnects), re-sent $(final_stat "$blog" nbd-resends), no request failed"; fi ;;
      nbd)
        if [ "$(final_stat "$blog" writes)" -le 0 ]; then r="FAIL (no writes went through NBD)"
        elif [ "$(final_stat "$blog" nbd-failed)" != 0 ]; then r="FAIL (NBD requests failed)"
        else tb_log "$c: $(final_stat "$blog" writes) writes / $(final_stat "$blog" reads) reads through qemu-nbd"; fi ;;
      resize)
        local newsize
        newsize="$(tr -d '\r' <"$glog" | sed -n 's/^TESTBED-RESIZE size=\([0-9]*\).*/\1/p' | head -n1)"
        if [ "$newsize" != $((96 * 1048576)) ]; then r="FAIL (guest saw size ${newsize:-none}, not 96 MiB)"
        elif [ "$(final_stat "$blog" config-changes)" -lt 1 ]; then r="FAIL (no config-change message sent)"
        else tb_log "$c: the guest saw the new size $newsize without a reboot"; fi ;;
      discard)
        local hole
        hole="$(python3 -c 'import os,sys
f=os.open(sys.argv[1],os.O_RDONLY)
try: print(os.lseek(f,8<<20,os.SEEK_DATA))
except OSError: print(1<<40)' "$img")"
        if ! tr -d '\r' <"$glog" | grep -aq '^TESTBED-DISCARD'; then r="FAIL (the guest's discard check did not run)"
        elif [ "$hole" -lt $((10 * 1048576)) ]; then r="FAIL (no hole at 8 MiB..10 MiB after the discard: data at $hole)"
        elif [ "$(final_stat "$blog" discards)" -le 0 ]; then r="FAIL (no DISCARD reached the back-end)"
        else tb_log "$c: the discarded 2 MiB is a hole in the image (next data at $hole)"; fi ;;
      packed)
        if [ "$(guest_feature "$glog" 34)" != 1 ]; then r="FAIL (guest did not negotiate RING_PACKED)"
        elif ! grep -aq 'started: packed' "$blog"; then r="FAIL (the back-end never served a packed ring)"; fi ;;
      reconnect|resubmit)
        local conns
        conns="$(cat "$dir"/backend-*.log | grep -ac 'front-end connected')"
        if [ "$conns" -lt 2 ]; then r="FAIL (only $conns connection(s) over both back-end runs)"
        elif [ "$(final_stat "$blog" writes)" -le 0 ]; then r="FAIL (the restarted back-end served no writes)"
        else tb_log "$c: $conns connections; restarted back-end: writes $(final_stat "$blog" writes), resubmitted $(final_stat "$blog" resubmitted)"; fi
        if [ "$r" = PASS ] && case "$c" in reconnect-packed|resubmit-packed*) true ;; *) false ;; esac; then
          if [ "$(guest_feature "$glog" 34)" != 1 ]; then r="FAIL (guest did not negotiate RING_PACKED)"
          elif ! grep -aq 'from the inflight region' "$blog"; then r="FAIL (the restarted back-end did not recover the packed ring from the inflight region)"; fi
        fi
        [ "$r" = PASS ] && [ "$kind" = resubmit ] && r="$(check_resubmitted)" ;;
    esac
  fi
  tb_record "$c" "$r" "$secs"
  tb_log "$c: $r in ${secs}s (back-end start + boot + test; logs in $dir)"
}

# ---------------------------------------------------------------------------
# migrate cases (vhost-user.rst "Migration"): two QEMUs on this machine, each on its own back-end process
# serving the same image. The source runs the guest's soak loop; the destination waits with -incoming. Once
# MIGRATE_AFTER_ROUND rounds are verified, qmp-migrate.py migrates the guest, whose console continues in the
# destination's log. While the source migrates, QEMU reads the dirty log our back-end marks; at the switchover it
# stops the rings (GET_VRING_BASE: each ring first completes its in-flight requests) and copies the last dirty pages.
# shellcheck disable=SC2054  # the commas are inside QEMU option strings
run_migrate_case() {
  dir="$OUT/$c"
  rm -rf "$dir"; mkdir -p "$dir"
  img="$dir/disk.img"; glog="$dir/guest-source.log"; local dlog="$dir/guest-destination.log"
  local src_sock="$sockdir/$c.src" dst_sock="$sockdir/$c.dst" mig="$sockdir/$c.mig" qmp="$sockdir/$c.qmp" dqmp="$sockdir/$c.dqmp"
  local sblog="$dir/backend-source.log" dblog="$dir/backend-destination.log"
  seed="host-$c"
  # init_on_alloc=0: Debian's kernel zeroes every page it allocates (INIT_ON_ALLOC_DEFAULT_ON), a CPU write that
  # makes QEMU resend the page anyway; without it, a page-cache page only the device's DMA filled reaches the
  # destination only through the back-end's dirty log, which is what these cases test.
  # The late fill (guest-blk-test.sh testbed.latefill): LATEFILL_LEN host-written random bytes at LATEFILL_OFF that
  # the guest reads into its page cache once qmp-migrate.py signals at LATEFILL_MARK that QEMU's first pass is done.
  local lfsha
  lfsha="$(head -c "$LATEFILL_LEN" /dev/urandom | tee >(dd of="$img.lf" bs=1M status=none) | sha256sum | cut -d' ' -f1)"
  local append="init_on_alloc=0 testbed.mode=soak testbed.latefill=$LATEFILL_MARK:$LATEFILL_OFF:$LATEFILL_LEN:$lfsha testbed.jobs=2 testbed.mib=4 testbed.rounds=$MIGRATE_ROUNDS testbed.verify=$PREFILL_OFF:$PREFILL_LEN:$seed testbed.seed=$c testbed.timeout=$((GUEST_TIMEOUT - 20))"
  local bargs=() sargs=() qargs=() dev="vhost-user-blk-pci,chardev=c0,disable-legacy=on" target=(--blk-file "$img")
  # MIGRATE_BACKEND_ARGS: extra back-end options for diagnosis (e.g. "--log-level Trace": every message)
  read -r -a bargs <<<"${MIGRATE_BACKEND_ARGS:-}"
  case "$c" in
    migrate-packed) dev="$dev,packed=on" ;;
    migrate-mq4)
      # 4 vCPUs on one TCG thread are slow: fewer rounds, or the guest's own 160 s limit ends the loop
      bargs+=(--num-queues 4); qargs=(-smp 4); dev="$dev,num-queues=4"
      append="testbed.jobs=4 ${append/testbed.jobs=2 /}"; append="${append/testbed.rounds=$MIGRATE_ROUNDS/testbed.rounds=$MIGRATE_MQ4_ROUNDS}" ;;
    migrate-viommu)
      # No ATS and a strict guest: QEMU 7.2 does not migrate the guest's ATS enable, so the destination's vhost
      # notifiers would take device-IOTLB flushes uncropped and assert; without ATS only page-selective
      # invalidations reach the back-end, which iommu.strict=1 makes the guest send (see the case description).
      append="intel_iommu=on iommu.strict=1 $append"
      # sata=off: QEMU 7.2 cannot load q35's AHCI under intel-iommu when the guest never set it up ("bad FIS
      # receive buffer address"); the guest has no AHCI driver, so the controller is dropped.
      qargs=(-machine sata=off -device intel-iommu,intremap=off -device pcie-root-port,id=rp0,bus=pcie.0,chassis=1)
      dev="vhost-user-blk-pci,chardev=c0,bus=rp0,disable-legacy=on,iommu_platform=on" ;;
    migrate-nolog) sargs=(--inject-no-dirty-log) ;;
  esac
  tb_make_image "$img" "$IMG_SIZE" "$PREFILL_OFF" "$PREFILL_LEN" "$seed"
  dd if="$img.lf" of="$img" bs=1M seek="$LATEFILL_OFF" oflag=seek_bytes conv=notrunc status=none; rm -f "$img.lf"
  local t0 t1 secs r=PASS mrc=0 drc
  t0=$(tb_now_ms)
  sock="$src_sock"
  if ! start_backend "$sblog" "${bargs[@]}" "${sargs[@]}"; then
    tb_record "$c" "FAIL (source back-end did not start; $sblog)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  local src_backend_pid="$backend_pid"
  sock="$dst_sock"
  if ! start_backend "$dblog" "${bargs[@]}"; then
    tb_record "$c" "FAIL (destination back-end did not start; $dblog)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  dest_backend_pid="$backend_pid"; backend_pid="$src_backend_pid"
  # The same machine on both sides (run-guest.sh's memfd RAM, kernel, initrd, command line), plus QMP on the
  # source and -incoming on the destination.
  tb_start guest_pid "$dir/run-guest-source.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" --accel "$MIGRATE_ACCEL" \
    --initrd "$initrd" --log "$glog" --append "$append" -- "${qargs[@]}" -chardev "socket,id=c0,path=$src_sock" -device "$dev" \
    -qmp "unix:$qmp,server=on,wait=off"
  tb_start dest_pid "$dir/run-guest-destination.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" --accel "$MIGRATE_ACCEL" \
    --initrd "$initrd" --log "$dlog" --append "$append" -- "${qargs[@]}" -chardev "socket,id=c0,path=$dst_sock" -device "$dev" \
    -incoming "unix:$mig" -S -qmp "unix:$dqmp,server=on,wait=off"
  local n=0
  until tr -d '\r' 2>/dev/null <"$glog" | grep -aq "soak: round $MIGRATE_AFTER_ROUND/"; do
    if ! kill -0 "$guest_pid" 2>/dev/null; then r="FAIL (source guest ended before soak round $MIGRATE_AFTER_ROUND)"; break; fi
    n=$((n + 1)); [ "$n" -le $((GUEST_TIMEOUT * 20)) ] || { r="FAIL (source guest never reached soak round $MIGRATE_AFTER_ROUND)"; break; }
    sleep 0.05
  done
  if [ "$r" = PASS ]; then
    tb_log "$c: guest I/O running ($(tr -d '\r' <"$glog" | grep -ac 'soak: round') rounds verified on the source); migrating"
    set +e
    timeout -k 5 $((MIGRATE_TIMEOUT + 30)) python3 "$TESTBED_SCRIPTS/qmp-migrate.py" "$qmp" "unix:$mig" "$MIGRATE_TIMEOUT" "$MIGRATE_BANDWIDTH" --compare "$dqmp" --hold "$MIGRATE_HOLD" \
      --signal "$img:$LATEFILL_MARK" --await "$glog:TESTBED-LATEFILL filled" >"$dir/migrate.out" 2>&1
    mrc=$?
    set -e
    cat "$dir/migrate.out" >&2
    [ "$mrc" -eq 0 ] || r="FAIL (migration did not complete: $(tail -n1 "$dir/migrate.out"))"
  fi
  if [ "$c" = migrate-nolog ]; then
    # The destination runs on RAM with lost pages: it should fail its late-fill check, but lost pages elsewhere
    # could also make it oops or hang, so it gets 120 s, not the guest's whole timeout.
    for _ in $(seq 1200); do kill -0 "$dest_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$dest_pid" 2>/dev/null && tb_log "$c: the destination guest still runs 120 s after the migration; stopping it"
    tb_stop dest_pid 5
    drc=1; tr -d '\r' <"$dlog" | grep -aq '^TESTBED-RESULT: PASS' && drc=0
  else
    set +e; wait "$dest_pid"; drc=$?; set -e
  fi
  dest_pid=""
  cat "$dir/run-guest-destination.out" >&2
  tb_stop guest_pid 5
  t1=$(tb_now_ms)
  tb_stop backend_pid 10
  tb_stop dest_backend_pid 10
  secs="$(tb_secs "$t0" "$t1")"
  tb_guest_lines "$glog" | sed "s/^/[guest $c source] /" >&2
  tb_guest_lines "$dlog" | sed "s/^/[guest $c destination] /" >&2
  grep -a -e 'final stats:' -e 'features:' -e 'dirty' -e 'fail' -e 'rror' "$sblog" | sed "s/^/[backend $c source] /" >&2 || true
  grep -a -e 'final stats:' -e 'features:' -e 'dirty' -e 'fail' -e 'rror' "$dblog" | sed "s/^/[backend $c destination] /" >&2 || true

  local dirty rounds_after differ
  dirty="$(final_stat "$sblog" dirty-pages)"
  differ="$(sed -n 's/^MEMCOMPARE .* differ=\([0-9]*\).*/\1/p' "$dir/migrate.out")"
  rounds_after="$(tr -d '\r' <"$dlog" | grep -ac 'soak: round [0-9]*/.* verified' || true)"
  local lfdiffers lfintact
  lfdiffers="$(tr -d '\r' <"$dlog" | grep -a -m1 'late fill: the page-cache copy .* differs' || true)"
  lfintact="$(tr -d '\r' <"$dlog" | grep -a -m1 'late fill: the page-cache copy .* is intact' || true)"
  if [ "$r" = PASS ] && ! grep -aq '^HOLD signal=written await=seen' "$dir/migrate.out"; then
    r="FAIL (the guest did not report its late fill while the migration was held: $(grep -a '^HOLD' "$dir/migrate.out" || echo 'no HOLD line'))"
  fi
  if [ "$c" = migrate-nolog ]; then
    # Expected, so that the migrate cases can fail: with nothing logged, the page-cache pages the device filled
    # after QEMU's first pass reach the destination stale. The host sees it (MEMCOMPARE differ > 0) and so must
    # the guest's own verification (its late-fill check on the destination fails).
    if [ "$r" != PASS ]; then :
    elif [ "${dirty:-1}" != 0 ]; then r="FAIL (the injected back-end logged ${dirty:-?} pages)"
    elif [ -z "$differ" ]; then r="FAIL (no MEMCOMPARE line in migrate.out)"
    elif [ "$differ" -eq 0 ]; then r="FAIL (the destination's RAM equals the source's although nothing was logged: the case cannot see lost writes)"
    elif [ "$drc" -eq 0 ]; then r="FAIL (RAM differs in $differ pages, but the guest on the destination passed: its verification cannot see lost writes)"
    elif [ -z "$lfdiffers" ]; then r="FAIL (the destination guest failed, but not on the late-fill check: $(tr -d '\r' <"$dlog" | grep -a -m1 -e 'FAIL' -e 'BUG:' -e 'Oops' -e 'Kernel panic' || echo 'no reason'))"
    else tb_log "$c: without dirty logging the destination's RAM differs from the stopped source's in $differ pages, and the guest's check failed: ${lfdiffers#*testbed-blk: }"; fi
  elif [ "$r" != PASS ]; then :
  elif [ "$drc" -ne 0 ]; then r="FAIL (guest on the destination: run-guest.sh exit $drc)"
  elif [ "$rounds_after" -lt 1 ]; then r="FAIL (no soak round was verified on the destination: the guest finished before the switchover)"
  elif ! grep -aq 'final stats:' "$sblog" || ! grep -aq 'final stats:' "$dblog"; then r="FAIL (no final stats line from a back-end)"
  elif [ "$(final_stat "$sblog" protocol-errors)" != 0 ] || [ "$(final_stat "$dblog" protocol-errors)" != 0 ]; then r="FAIL (back-end protocol errors)"
  elif [ "$(final_stat "$sblog" handler-faults)" != 0 ] || [ "$(final_stat "$dblog" handler-faults)" != 0 ]; then r="FAIL (back-end handler faults)"
  elif [ -z "$dirty" ] || [ "$dirty" -lt $((LATEFILL_LEN / 4096)) ]; then r="FAIL (the source back-end logged ${dirty:-?} dirty pages, fewer than the late fill's $((LATEFILL_LEN / 4096)))"
  elif [ -z "$lfintact" ]; then r="FAIL (the destination guest did not report its late-fill check)"
  elif [ "${differ:-x}" != 0 ]; then r="FAIL (the destination's RAM differs from the stopped source's in ${differ:-?} pages: a write the dirty log missed)"
  elif ! grep -aq 'dirty logging on' "$sblog"; then r="FAIL (the source back-end never saw VHOST_F_LOG_ALL)"
  elif [ "$(final_stat "$dblog" writes)" -le 0 ]; then r="FAIL (the destination back-end served no writes)"
  else
    r="$(tb_check_written "$c" "$img" "$dlog" "$PREFILL_OFF" "$PREFILL_LEN" "$seed")"
  fi
  if [ "$r" = PASS ]; then
    case "$c" in
      migrate-packed) [ "$(guest_feature "$glog" 34)" = 1 ] || r="FAIL (guest did not negotiate RING_PACKED)" ;;
      migrate-viommu)
        if [ "$(guest_feature "$glog" 33)" != 1 ]; then r="FAIL (guest did not negotiate ACCESS_PLATFORM)"
        elif [ "$(final_stat "$sblog" iotlb-misses)" -le 0 ]; then r="FAIL (the source back-end never translated through its IOTLB)"
        elif [ "$(final_stat "$dblog" iotlb-misses)" -le 0 ]; then r="FAIL (the destination back-end never translated through its IOTLB)"
        elif [ "$(final_stat "$sblog" iotlb-invalidations)" -le 0 ] || [ "$(final_stat "$dblog" iotlb-invalidations)" -le 0 ]; then
          r="FAIL (a back-end got no IOTLB invalidation: source $(final_stat "$sblog" iotlb-invalidations), destination $(final_stat "$dblog" iotlb-invalidations))"; fi ;;
      migrate-mq4) [ "$(tr -d '\r' <"$glog" | grep -a -m1 '^TESTBED-DISK ' | sed -n 's/.*queues=\([0-9]*\).*/\1/p')" = 4 ] || r="FAIL (the guest did not see 4 queues)" ;;
    esac
  fi
  [ "$r" = PASS ] && [ "$c" != migrate-nolog ] &&
    tb_log "$c: migrated: $(grep -a '^MIGRATION' "$dir/migrate.out"); source back-end dirty-pages $dirty; $rounds_after soak rounds verified on the destination; destination back-end writes $(final_stat "$dblog" writes)"
  tb_record "$c" "$r" "$secs"
  tb_log "$c: $r in ${secs}s (logs in $dir)"
}

# ---------------------------------------------------------------------------
# rng cases: our vhost-user-rng back-end (or, for rng-qemu*, QEMU's own virtio-rng-pci fed by
# egd-counter.py) and guest-rng-test.sh, which reads RNG_BYTES from /dev/hwrng. The host then
# compares the guest's byte count with the back-end's final stats: bytes-served must cover
# what the guest read and exceed it by at most RNG_SLACK. The excess is the kernel's own
# reads: one 64-byte block when the driver registers (plus the request virtio_rng always
# keeps posted) and one per random.c reseed interval from the hwrng thread, which Linux 6.1
# runs whatever the quality. Measured 320-512 bytes (5-8 blocks of 64) with rng-qemu, idle
# guest time included; the default bound of 4096 (64 blocks) leaves room for a slow
# (loaded) machine and still fails a back-end that serves a multiple of what is asked.
RNG_BYTES="${RNG_BYTES:-1048576}"
RNG_SLACK="${RNG_SLACK:-4096}"
RNG_RATE=262144                       # rng-ratelimit: --max-bytes-per-second
RNG_MIN_MS="${RNG_MIN_MS:-3000}"      # 1 MiB at 256 KiB/s is 4 s; up to 1 s of initial burst allowed
RNG_MAX_MS="${RNG_MAX_MS:-12000}"     # and 3x the nominal 4 s: a limiter far too strict fails too
# The guest needs about 10 s; a dead device leaves its dd blocked, so stop it well before
# GUEST_TIMEOUT (the blk cases' 180 s).
RNG_TEST_TIMEOUT="${RNG_TEST_TIMEOUT:-60}"
# Appended to the QEMU device of every rng case, for diagnosis (e.g. ",indirect_desc=off").
RNG_DEV_OPTS="${RNG_DEV_OPTS:-}"
rng_initrd="$TESTBED_DIR/initramfs-rng.cpio.gz"

# rng_guest LOG KEY: a TESTBED-RNG-KEY: value from the guest log (empty if none)
rng_guest() { tr -d '\r' <"$1" | grep -a -m1 "^TESTBED-RNG-$2: " | tr -dc 0-9; }
# rng_feature LOG BIT: one feature bit of the guest's virtio-rng device (0/1)
rng_feature() {
  local f
  f="$(tr -d '\r' <"$1" | grep -a -m1 '^TESTBED-RNG ' | sed -n 's/.*features=\([01]*\).*/\1/p')"
  echo "${f:$2:1}"
}

# shellcheck disable=SC2054  # the commas are inside QEMU option strings
run_rng_case() {
  dir="$OUT/$c"
  rm -rf "$dir"; mkdir -p "$dir"
  sock="$sockdir/$c.sock"; glog="$dir/guest.log"; blog="$dir/backend.log"
  local append="testbed.rngbytes=$RNG_BYTES testbed.timeout=$RNG_TEST_TIMEOUT"
  # vhost-user-rng-pci is modern-only in QEMU 7.2 and has no disable-legacy property (QEMU
  # refuses it); the guest must still negotiate VERSION_1
  local bargs=() qargs=() cmd=() dev="vhost-user-rng-pci,chardev=c0" ours=1
  case "$c" in
    rng) ;;
    rng-viommu)
      # as the blk viommu case: ATS behind a PCIe root port, or QEMU forwards no invalidations
      append="intel_iommu=on $append"
      qargs=(-device intel-iommu,intremap=off,device-iotlb=on -device pcie-root-port,id=rp0,bus=pcie.0,chassis=1)
      dev="vhost-user-rng-pci,chardev=c0,bus=rp0,iommu_platform=on,ats=on" ;;
    rng-ratelimit) bargs=(--max-bytes-per-second "$RNG_RATE") ;;
    rng-qemu)
      ours=0; qargs=(-object rng-egd,id=rng0,chardev=c0); dev="virtio-rng-pci,rng=rng0,disable-legacy=on" ;;
    rng-qemu-ratelimit)
      ours=0; qargs=(-object rng-egd,id=rng0,chardev=c0)
      dev="virtio-rng-pci,rng=rng0,disable-legacy=on,max-bytes=$RNG_RATE,period=1000" ;;
  esac
  dev="$dev$RNG_DEV_OPTS"
  if [ "$ours" -eq 1 ]; then cmd=("${BACKEND[@]}" vhost-user-rng --socket-path "$sock" "${bargs[@]}")
  else cmd=(python3 "$TESTBED_SCRIPTS/egd-counter.py" "$sock" "$GUEST_TIMEOUT"); fi

  local t0 t1 secs r=PASS
  t0=$(tb_now_ms)
  { printf '[testbed] %s: backend:' "$c"; printf ' %q' "${cmd[@]}"; echo; } >&2
  rm -f "$sock"
  tb_start backend_pid "$blog" timeout -k 5 $((GUEST_TIMEOUT + 120)) "${cmd[@]}"
  if ! tb_wait_socket "$sock" "$backend_pid" "$blog" 60; then
    tb_stop backend_pid 10
    tb_record "$c" "FAIL (back-end did not start; $blog)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  tb_start guest_pid "$dir/run-guest.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" \
    --initrd "$rng_initrd" --log "$glog" --append "$append" -- "${qargs[@]}" -chardev "socket,id=c0,path=$sock" -device "$dev"
  wait_guest
  t1=$(tb_now_ms)
  tb_stop backend_pid 10
  tb_stop nbd_pid 5
  secs="$(tb_secs "$t0" "$t1")"
  tr -d '\r' <"$glog" | grep -a -E '^(TESTBED-|testbed-rng:)' | sed "s/^/[guest $c] /" >&2 || true
  grep -a -e 'final stats:' -e 'features:' -e 'fail' -e 'rror' "$blog" | sed "s/^/[backend $c] /" >&2 || true

  local got ms served reqs conns perr misses
  got="$(rng_guest "$glog" BYTES || true)"; ms="$(rng_guest "$glog" MS || true)"
  served="$(final_stat "$blog" bytes-served || true)"; reqs="$(final_stat "$blog" requests || true)"
  conns="$(final_stat "$blog" connections || true)"; perr="$(final_stat "$blog" protocol-errors || true)"
  if [ "$grc" -ne 0 ]; then r="FAIL (guest: run-guest.sh exit $grc)"
  elif ! grep -aq 'final stats:' "$blog"; then r="FAIL (no final stats line in $blog)"
  elif [ -z "$got" ] || [ "$got" -lt "$RNG_BYTES" ]; then r="FAIL (guest read ${got:-no} bytes, expected $RNG_BYTES)"
  elif [ -z "$served" ] || [ -z "$reqs" ] || [ -z "$conns" ]; then
    r="FAIL (final stats lack bytes-served/requests/connections: $(grep -a 'final stats:' "$blog" | tail -n1))"
  elif [ "$conns" -lt 1 ] || [ "$reqs" -lt 1 ]; then r="FAIL (back-end saw $conns connection(s), $reqs request(s))"
  elif [ -n "$perr" ] && [ "$perr" != 0 ]; then r="FAIL (back-end protocol errors $perr)"
  elif [ "$served" -lt "$got" ]; then r="FAIL (back-end served $served bytes, fewer than the $got the guest read)"
  elif [ "$served" -gt $((got + RNG_SLACK)) ]; then
    r="FAIL (back-end served $served bytes, more than the guest's $got + $RNG_SLACK)"
  else
    tb_log "$c: guest read $got bytes in $ms ms; back-end served $served bytes in $reqs requests (excess $((served - got)))"
  fi
  if [ "$r" = PASS ]; then
    case "$c" in
      rng|rng-ratelimit|rng-qemu*)
        [ "$(rng_feature "$glog" 32)" = 1 ] || r="FAIL (guest did not negotiate VERSION_1)" ;;
      rng-viommu)
        misses="$(final_stat "$blog" iotlb-misses || true)"
        if [ "$(rng_feature "$glog" 33)" != 1 ]; then r="FAIL (guest did not negotiate ACCESS_PLATFORM)"
        elif [ "${misses:-0}" -le 0 ]; then r="FAIL (IOTLB not used: iotlb-misses ${misses:-?} iotlb-hits $(final_stat "$blog" iotlb-hits || true))"
        else tb_log "$c: back-end translated through the IOTLB: misses $misses hits $(final_stat "$blog" iotlb-hits || true)"; fi ;;
    esac
  fi
  if [ "$r" = PASS ]; then
    case "$c" in
      *ratelimit)
        if [ -z "$ms" ] || [ "$ms" -lt "$RNG_MIN_MS" ]; then r="FAIL (guest read $got bytes in ${ms:-?} ms: faster than $RNG_MIN_MS ms, not rate limited)"
        elif [ "$ms" -gt "$RNG_MAX_MS" ]; then r="FAIL (guest read $got bytes in $ms ms: slower than $RNG_MAX_MS ms, limit far below $RNG_RATE B/s)"
        else tb_log "$c: $got bytes in $ms ms = $((got * 1000 / ms)) B/s under a limit of $RNG_RATE B/s"; fi ;;
    esac
  fi
  tb_record "$c" "$r" "$secs"
  tb_log "$c: $r in ${secs}s (back-end start + boot + test; logs in $dir)"
}


# net cases: our vhost-user-net back-end on a TAP it creates, moved into a network namespace made
# for the case (traffic never leaves it), with a busybox nc server there sending NET_BYTES of
# random data; guest-net-test.sh pings the namespace and checks the data's sha256.
NET_BYTES="${NET_BYTES:-4194304}"
net_initrd="$TESTBED_DIR/initramfs-net.cpio.gz"

# netns_up TAP move|create: namespace $netns (lo up) holding TAP at 10.77.0.1/24, up. move: the back-end's TAP is
# moved in; create: a persistent TAP is made there (it outlives a back-end that attaches to it).
netns_up() {
  netns="vsnet-$$-$c"
  { ip netns add "$netns" && ip -n "$netns" link set lo up &&
    if [ "$2" = create ]; then ip -n "$netns" tuntap add dev "$1" mode tap; else ip link set dev "$1" netns "$netns"; fi &&
    ip -n "$netns" addr add 10.77.0.1/24 dev "$1" && ip -n "$netns" link set dev "$1" up; } >"$dir/netns.log" 2>&1
}
# start_blob_server: busybox nc in $netns serving $dir/blob on port 8080 to every connection (PID in server_pid)
start_blob_server() {
  tb_start server_pid "$dir/server.log" timeout $((GUEST_TIMEOUT + 60)) ip netns exec "$netns" busybox nc -ll -p 8080 -e cat "$dir/blob"
}

# net_teardown: stop the back-end and the server, remove the namespace
net_teardown() {
  tb_stop backend_pid 10
  tb_stop server_pid 5
  ip netns del "$netns" 2>/dev/null || true; netns=""
}

# shellcheck disable=SC2054  # the commas are inside QEMU option strings
run_net_case() {
  dir="$OUT/$c"
  rm -rf "$dir"; mkdir -p "$dir"
  sock="$sockdir/$c.sock"; glog="$dir/guest.log"; blog="$dir/backend.log"
  local tap="vsi$$${c//[^a-z]/}" bargs=() qargs=() dev="virtio-net-pci,netdev=n0,disable-legacy=on,mac=52:54:00:12:34:56,romfile=,vectors=0"
  local netdev="vhost-user,chardev=c0,id=n0" append="testbed.timeout=$((GUEST_TIMEOUT - 30))"
  tap="${tap:0:15}"
  case "$c" in
    net) ;;
    net-packed) dev="$dev,packed=on" ;;
    net-viommu)
      append="intel_iommu=on $append"
      qargs=(-device intel-iommu,intremap=off,device-iotlb=on -device pcie-root-port,id=rp0,bus=pcie.0,chassis=1)
      dev="$dev,bus=rp0,iommu_platform=on,ats=on" ;;
    net-mq) bargs=(--queue-pairs 2); netdev="$netdev,queues=2"; dev="$dev,mq=on"; qargs=(-smp 2); append="$append testbed.minrxq=2" ;;
  esac
  head -c "$NET_BYTES" /dev/urandom >"$dir/blob"
  local sha t0 t1 secs r=PASS
  sha="$(sha256sum "$dir/blob" | cut -d' ' -f1)"
  append="$append testbed.sha=$sha"
  t0=$(tb_now_ms)
  local cmd=(dotnet "$DLL" vhost-user-net --socket-path "$sock" --tap "$tap" "${bargs[@]}")
  { printf '[testbed] %s: backend:' "$c"; printf ' %q' "${cmd[@]}"; echo; } >&2
  rm -f "$sock"
  tb_start backend_pid "$blog" timeout -k 5 $((GUEST_TIMEOUT + 120)) "${cmd[@]}"
  if ! tb_wait_socket "$sock" "$backend_pid" "$blog" 60; then
    tb_stop backend_pid 10
    tb_record "$c" "FAIL (back-end did not start; $blog)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  if ! netns_up "$tap" move; then
    tb_stop backend_pid 10; ip netns del "$netns" 2>/dev/null || true; netns=""
    tb_record "$c" "FAIL (namespace set-up; $dir/netns.log)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  start_blob_server
  tb_start guest_pid "$dir/run-guest.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" \
    --initrd "$net_initrd" --log "$glog" --append "$append" -- "${qargs[@]}" -chardev "socket,id=c0,path=$sock" \
    -netdev "$netdev" -device "$dev"
  wait_guest
  t1=$(tb_now_ms)
  net_teardown
  secs="$(tb_secs "$t0" "$t1")"
  tr -d '\r' <"$glog" | grep -a -E '^(TESTBED-|testbed-net:)' | sed "s/^/[guest $c] /" >&2 || true
  grep -a -e 'final stats:' -e 'fail' -e 'rror' "$blog" | sed "s/^/[backend $c] /" >&2 || true
  local txp rxp rxb perr hf got
  txp="$(final_stat "$blog" tx-packets || true)"; rxp="$(final_stat "$blog" rx-packets || true)"
  rxb="$(final_stat "$blog" rx-bytes || true)"; perr="$(final_stat "$blog" protocol-errors || true)"
  hf="$(final_stat "$blog" handler-faults || true)"
  got="$(tr -d '\r' <"$glog" | grep -a -m1 '^TESTBED-NET-BYTES: ' | tr -dc 0-9 || true)"
  if [ "$grc" -ne 0 ]; then r="FAIL (guest: run-guest.sh exit $grc)"
  elif ! grep -aq 'final stats:' "$blog"; then r="FAIL (no final stats line in $blog)"
  elif [ "${got:-0}" -ne "$NET_BYTES" ]; then r="FAIL (guest downloaded ${got:-no} bytes, expected $NET_BYTES)"
  elif [ "${txp:-0}" -le 0 ] || [ "${rxp:-0}" -le 0 ]; then r="FAIL (back-end counted tx-packets ${txp:-?} rx-packets ${rxp:-?})"
  elif [ "${rxb:-0}" -lt "$NET_BYTES" ]; then r="FAIL (back-end delivered ${rxb:-?} bytes, less than the $NET_BYTES downloaded)"
  elif [ "${perr:-0}" != 0 ] || [ "${hf:-0}" != 0 ]; then r="FAIL (back-end protocol-errors ${perr:-?} handler-faults ${hf:-?})"
  fi
  local f misses
  f="$(tr -d '\r' <"$glog" | grep -a -m1 '^TESTBED-NET ' | sed -n 's/.*features=\([01]*\).*/\1/p' || true)"
  if [ "$r" = PASS ] && [ "$c" = net-packed ]; then
    [ "${f:34:1}" = 1 ] || r="FAIL (guest did not negotiate RING_PACKED)"
  fi
  if [ "$r" = PASS ] && [ "$c" = net-viommu ]; then
    misses="$(final_stat "$blog" iotlb-misses || true)"
    if [ "${f:33:1}" != 1 ]; then r="FAIL (guest did not negotiate ACCESS_PLATFORM)"
    elif [ "${misses:-0}" -le 0 ]; then r="FAIL (IOTLB not used: iotlb-misses ${misses:-?})"; fi
  fi
  tb_record "$c" "$r" "$secs"
  tb_log "$c: $r in ${secs}s (tx-packets ${txp:-?} rx-packets ${rxp:-?} rx-bytes ${rxb:-?}; logs in $dir)"
}

# net-switch: two guests on one back-end's built-in switch (see the case list at the top).
NET_DEV="virtio-net-pci,netdev=n0,disable-legacy=on,romfile=,vectors=0"
# shellcheck disable=SC2054  # the commas are inside QEMU option strings
run_net_switch_case() {
  dir="$OUT/$c"
  rm -rf "$dir"; mkdir -p "$dir"
  blog="$dir/backend.log"
  local sa="$sockdir/$c-a.sock" sb="$sockdir/$c-b.sock" ga="$dir/guest-a.log" gb="$dir/guest-b.log"
  local t0 t1 secs r=PASS rca rcb wait=$((GUEST_TIMEOUT / 2))
  local base="testbed.timeout=$((GUEST_TIMEOUT - 30)) testbed.wait=$wait testbed.port=8080"
  t0=$(tb_now_ms)
  local cmd=("${BACKEND[@]}" vhost-user-net --switch "sw$$" --socket-path "$sa" --socket-path "$sb")
  { printf '[testbed] %s: backend:' "$c"; printf ' %q' "${cmd[@]}"; echo; } >&2
  rm -f "$sa" "$sb"
  tb_start backend_pid "$blog" timeout -k 5 $((GUEST_TIMEOUT + 120)) "${cmd[@]}"
  if ! tb_wait_socket "$sa" "$backend_pid" "$blog" 60 || ! tb_wait_socket "$sb" "$backend_pid" "$blog" 10; then
    tb_stop backend_pid 10
    tb_record "$c" "FAIL (back-end did not start; $blog)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  # B serves, A fetches; both boot at once and wait up to $wait s for each other.
  tb_start dest_pid "$dir/run-guest-b.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" \
    --initrd "$net_initrd" --log "$gb" --append "$base testbed.role=serve testbed.ip=10.78.0.2/24 testbed.peer=10.78.0.1 testbed.bytes=$NET_BYTES" -- \
    -chardev "socket,id=c0,path=$sb" -netdev vhost-user,chardev=c0,id=n0 -device "$NET_DEV,mac=52:54:00:12:34:02"
  tb_start guest_pid "$dir/run-guest-a.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" \
    --initrd "$net_initrd" --log "$ga" --append "$base testbed.role=fetch testbed.ip=10.78.0.1/24 testbed.peer=10.78.0.2" -- \
    -chardev "socket,id=c0,path=$sa" -netdev vhost-user,chardev=c0,id=n0 -device "$NET_DEV,mac=52:54:00:12:34:01"
  set +e; wait "$guest_pid"; rca=$?; wait "$dest_pid"; rcb=$?; set -e
  guest_pid=""; dest_pid=""
  cat "$dir/run-guest-a.out" "$dir/run-guest-b.out" >&2
  t1=$(tb_now_ms)
  tb_stop backend_pid 10
  secs="$(tb_secs "$t0" "$t1")"
  tr -d '\r' <"$ga" | grep -a -E '^(TESTBED-|testbed-net:)' | sed "s/^/[guest A $c] /" >&2 || true
  tr -d '\r' <"$gb" | grep -a -E '^(TESTBED-|testbed-net:)' | sed "s/^/[guest B $c] /" >&2 || true
  grep -a -e 'final stats:' -e 'fail' -e 'rror' "$blog" | sed "s/^/[backend $c] /" >&2 || true
  local sha_a sha_b got arx btx af bf perr hf
  sha_a="$(tr -d '\r' <"$ga" | grep -a -m1 '^TESTBED-NET-SHA: ' | cut -d' ' -f2 || true)"
  sha_b="$(tr -d '\r' <"$gb" | grep -a -m1 '^TESTBED-NET-SHA: ' | cut -d' ' -f2 || true)"
  got="$(tr -d '\r' <"$ga" | grep -a -m1 '^TESTBED-NET-BYTES: ' | tr -dc 0-9 || true)"
  arx="$(final_stat "$blog" port0-rx-bytes || true)"; btx="$(final_stat "$blog" port1-tx-bytes || true)"
  af="$(final_stat "$blog" port0-floods || true)"; bf="$(final_stat "$blog" port1-floods || true)"
  perr="$(final_stat "$blog" protocol-errors || true)"; hf="$(final_stat "$blog" handler-faults || true)"
  if [ "$rca" -ne 0 ] || [ "$rcb" -ne 0 ]; then r="FAIL (guest A: run-guest.sh exit $rca, guest B: exit $rcb)"
  elif ! grep -aq 'final stats:' "$blog"; then r="FAIL (no final stats line in $blog)"
  elif [ "${got:-0}" -ne "$NET_BYTES" ]; then r="FAIL (guest A downloaded ${got:-no} bytes, expected $NET_BYTES)"
  elif [ -z "$sha_b" ] || [ "$sha_a" != "$sha_b" ]; then r="FAIL (sha256: A got ${sha_a:-none}, B served ${sha_b:-none})"
  elif [ "${arx:-0}" -lt "$NET_BYTES" ] || [ "${btx:-0}" -lt "$NET_BYTES" ]; then r="FAIL (port0-rx-bytes ${arx:-?} port1-tx-bytes ${btx:-?}, less than $NET_BYTES)"
  elif [ "${af:-0}" -le 0 ] || [ "${bf:-0}" -le 0 ]; then r="FAIL (no flooded frame counted: port0-floods ${af:-?} port1-floods ${bf:-?})"
  elif [ "${perr:-0}" != 0 ] || [ "${hf:-0}" != 0 ]; then r="FAIL (back-end protocol-errors ${perr:-?} handler-faults ${hf:-?})"
  fi
  tb_record "$c" "$r" "$secs"
  tb_log "$c: $r in ${secs}s (port0-rx-bytes ${arx:-?} port1-tx-bytes ${btx:-?} floods ${af:-?}/${bf:-?}; logs in $dir)"
}

# net-reconnect: the back-end killed and restarted under a guest downloading in a loop (see the case list).
NET_RECONNECT_ROUNDS="${NET_RECONNECT_ROUNDS:-8}"
NET_KILL_AFTER_ROUND="${NET_KILL_AFTER_ROUND:-2}"
# shellcheck disable=SC2054
run_net_reconnect_case() {
  dir="$OUT/$c"
  rm -rf "$dir"; mkdir -p "$dir"
  sock="$sockdir/$c.sock"; glog="$dir/guest.log"
  local tap="vsr$$" t0 t1 secs r=PASS sha done_at_kill
  tap="${tap:0:15}"
  head -c "$NET_BYTES" /dev/urandom >"$dir/blob"
  sha="$(sha256sum "$dir/blob" | cut -d' ' -f1)"
  t0=$(tb_now_ms)
  # A persistent TAP in the namespace outlives the back-end; the back-end runs in the namespace and attaches to it.
  if ! netns_up "$tap" create; then
    ip netns del "$netns" 2>/dev/null || true; netns=""
    tb_record "$c" "FAIL (namespace set-up; $dir/netns.log)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  local cmd=(ip netns exec "$netns" "${BACKEND[@]}" vhost-user-net --socket-path "$sock" --tap "$tap")
  start_net_backend() {
    { printf '[testbed] %s: backend:' "$c"; printf ' %q' "${cmd[@]}"; echo; } >&2
    rm -f "$sock"
    tb_start backend_pid "$1" timeout -k 5 $((GUEST_TIMEOUT + 120)) "${cmd[@]}"
    tb_wait_socket "$sock" "$backend_pid" "$1" 60
  }
  if ! start_net_backend "$dir/backend-1.log"; then
    tb_stop backend_pid 10; ip netns del "$netns" 2>/dev/null || true; netns=""
    tb_record "$c" "FAIL (back-end did not start; $dir/backend-1.log)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  start_blob_server
  tb_start guest_pid "$dir/run-guest.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" \
    --initrd "$net_initrd" --log "$glog" \
    --append "testbed.timeout=$((GUEST_TIMEOUT - 30)) testbed.role=loop testbed.rounds=$NET_RECONNECT_ROUNDS testbed.wait=30 testbed.sha=$sha" -- \
    -chardev "socket,id=c0,path=$sock,reconnect=1" -netdev vhost-user,chardev=c0,id=n0 -device "$NET_DEV,mac=52:54:00:12:34:56"
  # Kill once the guest has verified NET_KILL_AFTER_ROUND rounds (the next one is under way), then start a new back-end.
  local killed=0 child=""
  wait_guest_line "net-soak: round $NET_KILL_AFTER_ROUND/" && child="$(pgrep -P "$backend_pid" || true)"
  if [ -n "$child" ]; then
    done_at_kill="$(tr -d '\r' <"$glog" | grep -ac 'net-soak: round')"
    kill -KILL "$child"
    set +e; wait "$backend_pid"; set -e
    backend_pid=""
    echo "killed by the test (SIGKILL) at $(date +%T.%3N)" >>"$dir/backend-1.log"
    tb_log "$c: guest verified $done_at_kill rounds; killed back-end $child (kill -9)"
    sleep 0.5
    if start_net_backend "$dir/backend-2.log"; then killed=1; tb_log "$c: back-end restarted on $sock"
    else tb_log "$c: the second back-end did not start"; fi
  fi
  wait_guest
  t1=$(tb_now_ms)
  net_teardown
  secs="$(tb_secs "$t0" "$t1")"
  tr -d '\r' <"$glog" | grep -a -E '^(TESTBED-|testbed-net:|net-soak:)' | sed "s/^/[guest $c] /" >&2 || true
  grep -a -h -e 'final stats:' -e 'fail' -e 'rror' "$dir"/backend-*.log | sed "s/^/[backend $c] /" >&2 || true
  local rounds down rxb perr conn
  rounds="$(tr -d '\r' <"$glog" | grep -ac 'net-soak: round' || true)"
  down="$(tr -d '\r' <"$glog" | grep -a -m1 '^TESTBED-NET-CARRIER-DOWN: ' | tr -dc 0-9 || true)"
  rxb="$(final_stat "$dir/backend-2.log" rx-bytes || true)"; perr="$(final_stat "$dir/backend-2.log" protocol-errors || true)"
  conn="$(final_stat "$dir/backend-2.log" connections || true)"
  if [ "$killed" -ne 1 ]; then r="FAIL (the back-end was not killed and restarted during the guest's rounds)"
  elif [ "$grc" -ne 0 ]; then r="FAIL (guest: run-guest.sh exit $grc)"
  elif [ "${rounds:-0}" -ne "$NET_RECONNECT_ROUNDS" ] || [ "${rounds:-0}" -le "${done_at_kill:-0}" ]; then r="FAIL (guest verified ${rounds:-0} rounds, ${done_at_kill:-?} before the kill)"
  elif [ "${down:-0}" -lt 1 ]; then r="FAIL (the guest saw no carrier drop: TESTBED-NET-CARRIER-DOWN ${down:-none})"
  elif [ "${conn:-0}" -lt 1 ] || [ "${rxb:-0}" -lt "$NET_BYTES" ]; then r="FAIL (restarted back-end: connections ${conn:-?} rx-bytes ${rxb:-?}, less than one round)"
  elif [ "${perr:-0}" != 0 ]; then r="FAIL (restarted back-end: protocol-errors $perr)"
  fi
  tb_record "$c" "$r" "$secs"
  tb_log "$c: $r in ${secs}s (rounds ${rounds:-?}, ${done_at_kill:-?} before the kill, carrier drops ${down:-?}, restarted back-end rx-bytes ${rxb:-?}; logs in $dir)"
}

# migrate-net: live migration of a virtio-net guest between two back-end processes on one L2 segment (see the case
# list). The namespace holds a bridge (10.77.0.1/24) with two persistent TAPs, one per back-end; the namespace pings
# the guest every MIGRATE_NET_PING_MS (net-pinger.py) while qmp-migrate.py moves it; after the switchover the host
# downloads the guest's random bytes (testbed.role=serve) over TCP and checks their sha256.
MIGRATE_NET_PING_MS="${MIGRATE_NET_PING_MS:-20}"
MIGRATE_NET_SLACK_MS="${MIGRATE_NET_SLACK_MS:-3000}"
MIGRATE_NET_BYTES="${MIGRATE_NET_BYTES:-2097152}"
# shellcheck disable=SC2054  # the commas are inside QEMU option strings
run_migrate_net_case() {
  dir="$OUT/$c"
  rm -rf "$dir"; mkdir -p "$dir"
  glog="$dir/guest-source.log"; local dlog="$dir/guest-destination.log"
  local src_sock="$sockdir/$c.src" dst_sock="$sockdir/$c.dst" mig="$sockdir/$c.mig" qmp="$sockdir/$c.qmp" dqmp="$sockdir/$c.dqmp"
  local sblog="$dir/backend-source.log" dblog="$dir/backend-destination.log" pings="$dir/pings.out"
  local t0 t1 secs r=PASS mrc=1 drc=1 t_switch="" n
  local append="testbed.role=serve testbed.ipv6=0 testbed.bytes=$MIGRATE_NET_BYTES testbed.wait=30 testbed.timeout=$((GUEST_TIMEOUT - 20))"
  local bargs=() qdev=(-netdev vhost-user,chardev=c0,id=n0 -device "$NET_DEV,mac=52:54:00:12:34:56")
  read -r -a bargs <<<"${MIGRATE_BACKEND_ARGS:-}"
  t0=$(tb_now_ms)
  # One L2 segment: a bridge in the namespace with the two back-ends' TAPs (persistent: made before the back-ends
  # attach) as its ports; no STP, so a port forwards as soon as its back-end has the TAP open. The namespace knows
  # the guest's MAC for good (a permanent neighbour: it never ARPs for it) and the guest has IPv6 off, so neither
  # side sends a frame that would teach the bridge the guest's new port by chance: after the switchover only an
  # announcement does (our SEND_RARP; without it the guest's own ARP refresh comes 20 s or more later).
  netns="vsnet-$$-$c"
  if ! { ip netns add "$netns" && ip -n "$netns" link set lo up &&
         ip -n "$netns" link add br0 type bridge forward_delay 0 && ip -n "$netns" addr add 10.77.0.1/24 dev br0 &&
         ip -n "$netns" tuntap add dev tapsrc mode tap && ip -n "$netns" tuntap add dev tapdst mode tap &&
         ip -n "$netns" link set tapsrc master br0 up && ip -n "$netns" link set tapdst master br0 up &&
         ip -n "$netns" link set br0 up &&
         ip -n "$netns" neigh replace 10.77.0.2 lladdr 52:54:00:12:34:56 dev br0 nud permanent; } >"$dir/netns.log" 2>&1; then
    ip netns del "$netns" 2>/dev/null || true; netns=""
    tb_record "$c" "FAIL (namespace set-up; $dir/netns.log)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
  fi
  local side
  for side in source destination; do
    local s="$src_sock" t=tapsrc; [ "$side" = source ] || { s="$dst_sock"; t=tapdst; }
    local cmd=(ip netns exec "$netns" "${BACKEND[@]}" vhost-user-net --socket-path "$s" --tap "$t" "${bargs[@]}")
    { printf '[testbed] %s: %s backend:' "$c" "$side"; printf ' %q' "${cmd[@]}"; echo; } >&2
    rm -f "$s"
    if [ "$side" = source ]; then tb_start backend_pid "$sblog" timeout -k 5 $((GUEST_TIMEOUT + 120)) "${cmd[@]}"
    else tb_start dest_backend_pid "$dblog" timeout -k 5 $((GUEST_TIMEOUT + 120)) "${cmd[@]}"; fi
    if ! tb_wait_socket "$s" "$([ "$side" = source ] && echo "$backend_pid" || echo "$dest_backend_pid")" "$dir/backend-$side.log" 60; then
      net_teardown; tb_stop dest_backend_pid 10
      tb_record "$c" "FAIL ($side back-end did not start; $dir/backend-$side.log)" "$(tb_secs "$t0" "$(tb_now_ms)")"; return
    fi
  done
  tb_start guest_pid "$dir/run-guest-source.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" --accel "$MIGRATE_ACCEL" \
    --initrd "$net_initrd" --log "$glog" --append "$append" -- -chardev "socket,id=c0,path=$src_sock" "${qdev[@]}" \
    -qmp "unix:$qmp,server=on,wait=off"
  tb_start dest_pid "$dir/run-guest-destination.out" bash "$TESTBED_SCRIPTS/run-guest.sh" --quiet --timeout "$GUEST_TIMEOUT" --accel "$MIGRATE_ACCEL" \
    --initrd "$net_initrd" --log "$dlog" --append "$append" -- -chardev "socket,id=c0,path=$dst_sock" "${qdev[@]}" \
    -incoming "unix:$mig" -S -qmp "unix:$dqmp,server=on,wait=off"
  # The guest serves its bytes and has pinged the namespace: start the namespace's pings (server_pid: the case's one
  # helper process, stopped by net_teardown and the exit trap) and wait for replies through the source.
  if ! wait_guest_line "ping 10.77.0.1 ok"; then r="FAIL (the source guest never reached the namespace: $(tr -d '\r' <"$glog" | grep -a -m1 'FAIL' || echo 'no FAIL line'))"
  else
    tb_start server_pid "$pings" ip netns exec "$netns" python3 "$TESTBED_SCRIPTS/net-pinger.py" 10.77.0.2 "$MIGRATE_NET_PING_MS"
    n=0
    until [ "$(grep -ac '^REPLY ' "$pings" || true)" -ge 25 ]; do
      n=$((n + 1)); [ "$n" -le 600 ] || { r="FAIL (the guest answered no pings on the source: $(tail -n1 "$pings"))"; break; }
      sleep 0.05
    done
  fi
  if [ "$r" = PASS ]; then
    tb_log "$c: the guest answers pings every $MIGRATE_NET_PING_MS ms on the source; migrating"
    # Each output line of qmp-migrate.py stamped with the time it came: MIGRATION (source stopped, completed) and
    # MEMCOMPARE (just before the destination is continued) bound the time the guest cannot answer.
    set +e
    timeout -k 5 $((MIGRATE_TIMEOUT + 30)) python3 "$TESTBED_SCRIPTS/qmp-migrate.py" "$qmp" "unix:$mig" "$MIGRATE_TIMEOUT" "$MIGRATE_BANDWIDTH" \
      --compare "$dqmp" --hold "$MIGRATE_HOLD" 2>&1 | while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%3N)" "$l"; done >"$dir/migrate.out"
    mrc=${PIPESTATUS[0]}
    set -e
    t_switch="$(date +%s.%3N)"   # the source has quit: a reply from now on comes from the destination
    cat "$dir/migrate.out" >&2
    if [ "$mrc" -ne 0 ]; then r="FAIL (migration did not complete: $(tail -n1 "$dir/migrate.out"))"
    else
      n=0
      until [ "$(awk -v t="$t_switch" '/^REPLY /{ sub("at=", "", $3); if ($3 + 0 > t + 0) k++ } END { print k + 0 }' "$pings")" -ge 25 ]; do
        n=$((n + 1)); [ "$n" -le 600 ] || { r="FAIL (no pings answered on the destination within 30 s of the switchover)"; break; }
        sleep 0.05
      done
    fi
  fi
  local sha got want=""
  want="$(tr -d '\r' <"$glog" | grep -a -m1 '^TESTBED-NET-SHA: ' | cut -d' ' -f2 || true)"
  if [ "$r" = PASS ]; then
    # TCP after the switchover: the namespace downloads what the guest serves (testbed.role=serve) and checks it.
    set +e
    ip netns exec "$netns" timeout 60 busybox nc 10.77.0.2 8080 </dev/null >"$dir/download" 2>"$dir/download.err"
    set -e
    got="$(stat -c %s "$dir/download")"; sha="$(sha256sum "$dir/download" | cut -d' ' -f1)"
    if [ "$got" -ne "$MIGRATE_NET_BYTES" ] || [ "$sha" != "$want" ]; then
      r="FAIL (download after the switchover: $got bytes, sha256 $sha; the guest served $MIGRATE_NET_BYTES bytes, ${want:-no sha})"
    fi
  fi
  if [ "$r" = PASS ]; then set +e; wait "$dest_pid"; drc=$?; set -e; dest_pid=""; fi
  t1=$(tb_now_ms)
  tb_stop dest_pid 5
  tb_stop guest_pid 5
  tb_stop dest_backend_pid 10
  net_teardown   # the source back-end and the pinger (its summary line is written on SIGTERM)
  secs="$(tb_secs "$t0" "$t1")"
  cat "$dir/run-guest-destination.out" >&2
  tr -d '\r' <"$glog" | grep -a -E '^(TESTBED-|testbed-net:)' | sed "s/^/[guest $c source] /" >&2 || true
  tr -d '\r' <"$dlog" | grep -a -E '^(TESTBED-|testbed-net:)' | sed "s/^/[guest $c destination] /" >&2 || true
  grep -a -e 'final stats:' -e 'dirty' -e 'RARP' -e 'fail' -e 'rror' "$sblog" | sed "s/^/[backend $c source] /" >&2 || true
  grep -a -e 'final stats:' -e 'dirty' -e 'RARP' -e 'fail' -e 'rror' "$dblog" | sed "s/^/[backend $c destination] /" >&2 || true
  grep -a '^PINGS ' "$pings" | sed "s/^/[pings $c] /" >&2 || true

  local dirty differ downtime sent lost gap after window bound mline cline
  dirty="$(final_stat "$sblog" dirty-pages)"
  differ="$(sed -n 's/^[0-9.]* MEMCOMPARE .* differ=\([0-9]*\).*/\1/p' "$dir/migrate.out")"
  downtime="$(sed -n 's/^[0-9.]* MIGRATION .* downtime-ms=\([0-9]*\).*/\1/p' "$dir/migrate.out")"
  mline="$(awk '$2 == "MIGRATION" { print $1 }' "$dir/migrate.out")"; cline="$(awk '$2 == "MEMCOMPARE" { print $1 }' "$dir/migrate.out")"
  sent="$(sed -n 's/^PINGS sent=\([0-9]*\).*/\1/p' "$pings")"; lost="$(sed -n 's/^PINGS .* lost=\([0-9]*\).*/\1/p' "$pings")"
  gap="$(sed -n 's/^PINGS .* max-gap-ms=\([0-9]*\).*/\1/p' "$pings")"
  after="$(awk -v t="${t_switch:-9e99}" '/^REPLY /{ sub("at=", "", $3); if ($3 + 0 > t + 0) k++ } END { print k + 0 }' "$pings")"
  # The guest cannot answer from the source's stop (downtime before MIGRATION) until the destination runs (after
  # MEMCOMPARE); pings lost beyond that window plus MIGRATE_NET_SLACK_MS mean the namespace kept sending to the old path.
  window=""; [ -n "$mline" ] && [ -n "$cline" ] && [ -n "$downtime" ] && window="$(awk -v a="$mline" -v b="$cline" -v d="$downtime" 'BEGIN { printf "%d", (b - a) * 1000 + d }')"
  bound=""; [ -n "$window" ] && bound=$(((window + MIGRATE_NET_SLACK_MS) / MIGRATE_NET_PING_MS))
  if [ "$r" != PASS ]; then :
  elif [ "$drc" -ne 0 ]; then r="FAIL (guest on the destination: run-guest.sh exit $drc)"
  elif ! grep -aq 'final stats:' "$sblog" || ! grep -aq 'final stats:' "$dblog"; then r="FAIL (no final stats line from a back-end)"
  elif [ "$(final_stat "$sblog" protocol-errors)" != 0 ] || [ "$(final_stat "$dblog" protocol-errors)" != 0 ]; then r="FAIL (back-end protocol errors)"
  elif [ "$(final_stat "$sblog" handler-faults)" != 0 ] || [ "$(final_stat "$dblog" handler-faults)" != 0 ]; then r="FAIL (back-end handler faults)"
  elif ! grep -aq 'dirty logging on' "$sblog"; then r="FAIL (the source back-end never saw VHOST_F_LOG_ALL)"
  elif [ -z "$dirty" ] || [ "$dirty" -le 0 ]; then r="FAIL (the source back-end logged no dirty page: dirty-pages ${dirty:-?})"
  elif [ "${differ:-x}" != 0 ]; then r="FAIL (the destination's RAM differs from the stopped source's in ${differ:-?} pages: a write the dirty log missed)"
  elif [ -z "$sent" ] || [ -z "$bound" ]; then r="FAIL (no ping summary or no migration times: pings '${sent:-?}', window '${window:-?}')"
  elif [ "$lost" -gt "$bound" ]; then r="FAIL ($lost of $sent pings lost, more than the $bound that fit in the ${window} ms pause + ${MIGRATE_NET_SLACK_MS} ms: the namespace did not learn the guest's new path)"
  elif [ "$(final_stat "$dblog" rx-packets)" -le 0 ] || [ "$(final_stat "$dblog" tx-packets)" -le 0 ]; then r="FAIL (the destination back-end moved no frames: rx-packets $(final_stat "$dblog" rx-packets) tx-packets $(final_stat "$dblog" tx-packets))"
  elif [ "$(final_stat "$dblog" rarp-sent)" -le 0 ]; then r="FAIL (the destination back-end broadcast no RARP: rarp-sent $(final_stat "$dblog" rarp-sent))"
  fi
  tb_log "$c: migrated: $(sed -n 's/^[0-9.]* \(MIGRATION .*\)/\1/p' "$dir/migrate.out"); source back-end dirty-pages ${dirty:-?}; destination back-end rarp-sent $(final_stat "$dblog" rarp-sent); pings every $MIGRATE_NET_PING_MS ms: sent ${sent:-?}, lost ${lost:-?} (bound ${bound:-?}: pause ${window:-?} ms + $MIGRATE_NET_SLACK_MS ms), longest gap ${gap:-?} ms, $after answered after the switchover; download ${got:-?} bytes"
  tb_record "$c" "$r" "$secs"
  tb_log "$c: $r in ${secs}s (logs in $dir)"
}

for c in "${cases[@]}"; do
  if [ "$c" = qsd ]; then
    t0=$(tb_now_ms)
    if QSD_OUT="$OUT/qsd" GUEST_TIMEOUT="$GUEST_TIMEOUT" bash "$TESTBED_SCRIPTS/qsd-reference.sh" rw ro mq; then r=PASS
    else r="FAIL (qsd-reference.sh rw ro mq; logs in $OUT/qsd)"; fi
    tb_record qsd "$r" "$(tb_secs "$t0" "$(tb_now_ms)")"
    continue
  fi
  case "$c" in
    rng*) run_rng_case ;; migrate-net) run_migrate_net_case ;; migrate*) run_migrate_case ;;
    net-switch) run_net_switch_case ;; net-reconnect) run_net_reconnect_case ;; net*) run_net_case ;;
    *) run_case ;;
  esac
done

tb_summary interop "${cases[@]}"
exit "$TB_OVERALL"
