#!/usr/bin/env bash
# Boots the testbed guest as a libvirt domain (QEMU driver, TCG) whose disk is <disk type='vhostuser'> on a
# vhost-user-blk socket, with memfd shared memory (<memoryBacking>), the way an operator's libvirt would drive our
# back-end. Starts a private libvirtd (its own unix socket directory; no systemd needed) and virtlogd if none runs,
# creates a transient domain, waits until the guest powers off, and stops what it started.
#
#   run-libvirt-guest.sh --socket SOCK --log SERIAL_LOG [--initrd F] [--append "k=v ..."] [--timeout S] [--xml-out F]
#
# Exit codes as run-guest.sh: 0 the guest printed TESTBED-RESULT: PASS, 1 FAIL, 2 no result (timeout, boot failure).
# QEMU runs as root for this domain (<seclabel model='dac'>), so the back-end's socket needs no group permissions.
set -euo pipefail
source "$(dirname "$0")/common.sh"
exec </dev/null

sock="" log="" initrd="$TESTBED_DEFAULT_INITRD" append="" tmo=180 xml_out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --socket) sock="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --initrd) initrd="$2"; shift 2 ;;
    --append) append="$2"; shift 2 ;;
    --timeout) tmo="$2"; shift 2 ;;
    --xml-out) xml_out="$2"; shift 2 ;;
    *) tb_die "unknown option $1" ;;
  esac
done
[ -n "$sock" ] && [ -n "$log" ] || tb_die "--socket and --log are required"
for p in libvirtd virtlogd virsh; do command -v "$p" >/dev/null || tb_die "$p missing: apt-get install libvirt-daemon-system libvirt-clients (scripts/testbed/setup.sh)"; done
kernel="$TESTBED_KERNEL_DIR/vmlinuz"
[ -f "$kernel" ] || tb_die "no kernel $kernel; run scripts/testbed/setup.sh"

work="$(mktemp -d "${TMPDIR:-/tmp}/vstb-lv.XXXXXX")"
uri="qemu:///system?socket=$work/libvirt-sock"
name="vs-testbed-$$-$(basename "$work" | tr -dc 'A-Za-z0-9')"
libvirtd_pid="" virtlogd_pid=""
cleanup() {
  virsh -c "$uri" destroy "$name" >/dev/null 2>&1 || true
  for v in libvirtd_pid virtlogd_pid; do
    local pid="${!v}"
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  cp "$work/libvirtd.log" "$(dirname "$log")/libvirtd.log" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# virtlogd has one fixed socket: use the running one, or start one for this run.
if ! [ -S /run/libvirt/virtlogd-sock ] || ! python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' /run/libvirt/virtlogd-sock 2>/dev/null; then
  rm -f /run/libvirt/virtlogd-sock
  virtlogd -d -p "$work/virtlogd.pid"
  for _ in $(seq 100); do [ -s "$work/virtlogd.pid" ] && break; sleep 0.1; done
  virtlogd_pid="$(cat "$work/virtlogd.pid")"
fi
cat >"$work/libvirtd.conf" <<CONF
unix_sock_dir = "$work"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$work/libvirtd.log"
CONF
libvirtd -d -f "$work/libvirtd.conf" -p "$work/libvirtd.pid"
for _ in $(seq 300); do [ -S "$work/libvirt-sock" ] && [ -s "$work/libvirtd.pid" ] && break; sleep 0.1; done
libvirtd_pid="$(cat "$work/libvirtd.pid" 2>/dev/null || true)"
[ -S "$work/libvirt-sock" ] || tb_die "libvirtd did not start (log: $(tail -n 5 "$work/libvirtd.log" 2>/dev/null))"
tb_log "libvirt: $(virsh -c "$uri" version 2>/dev/null | grep -E 'library|hypervisor' | tr '\n' ';')"

: >"$log"
cat >"$work/domain.xml" <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$kernel</kernel>
    <initrd>$initrd</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=4 $append</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='vhostuser' device='disk'>
      <driver name='qemu' type='raw'/>
      <source type='unix' path='$sock'>
        <reconnect enabled='yes' timeout='10'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='$log'/><target port='0'/></serial>
    <console type='file'><source path='$log'/><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
XML
[ -z "$xml_out" ] || cp "$work/domain.xml" "$xml_out"
t0=$(tb_now_ms)
virsh -c "$uri" create "$work/domain.xml" >&2 || { tb_log "NO RESULT: virsh create failed"; exit 2; }
# A transient domain is gone once the guest powers off (on_poweroff destroy).
end=$(( $(date +%s) + tmo ))
while virsh -c "$uri" domstate "$name" >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$end" ]; then tb_log "NO RESULT: domain still running after ${tmo}s; destroyed"; exit 2; fi
  sleep 0.5
done
secs="$(tb_secs "$t0" "$(tb_now_ms)")"
result="$(tr -d '\r' <"$log" | grep -a -m1 '^TESTBED-RESULT: ' || true)"
case "$result" in
  "TESTBED-RESULT: PASS") tb_log "PASS in ${secs}s under libvirt (log $log)"; exit 0 ;;
  "TESTBED-RESULT: FAIL"*) tb_log "FAIL in ${secs}s under libvirt: ${result#TESTBED-RESULT: FAIL} (log $log)"; exit 1 ;;
  *) tb_log "NO RESULT: the domain ended after ${secs}s without a result (log $log)"; tail -n 20 "$log" >&2; exit 2 ;;
esac
