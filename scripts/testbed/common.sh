# Shared host-side helpers for the testbed scripts. Sourced, not executed.
# shellcheck shell=bash

TESTBED_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TESTBED_REPO="$(cd "$TESTBED_SCRIPTS/../.." && pwd)"
# Everything downloaded or built lives here (gitignored). Override with TESTBED_DIR.
TESTBED_DIR="${TESTBED_DIR:-$TESTBED_REPO/.testbed}"
TESTBED_KERNEL_DIR="$TESTBED_DIR/kernel/current"     # symlink made by setup.sh
TESTBED_DEFAULT_INITRD="$TESTBED_DIR/initramfs-blk.cpio.gz"

# The module load order from the issue, plus the rng stack (rng_core = hw_random, built in
# on Debian 6.1; virtio_rng ships as virtio-rng.ko). setup.sh keeps only the ones that are
# loadable modules in the downloaded kernel (built-ins need no insmod). Names are module
# names (underscores); the files may spell them with dashes.
TESTBED_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk rng_core virtio_rng failover net_failover virtio_net)

tb_log() { printf '[testbed] %s\n' "$*" >&2; }
tb_die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }

# Milliseconds since the epoch (GNU date).
tb_now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------
# Host-side helpers shared by qsd-reference.sh and interop.sh: image prefill and
# verification, background processes started and stopped by PID, the result table.

# Seconds (one decimal) between two tb_now_ms values.
tb_secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# The guest's pattern, generated on the host with the same busybox awk.
tb_pattern() { busybox sh "$TESTBED_SCRIPTS/pattern.sh" "$@"; }

# tb_img_sha IMG OFF LEN: sha256 of a byte range of an image file
tb_img_sha() {
  dd if="$1" bs=65536 skip="$2" count="$3" iflag=skip_bytes,count_bytes status=none | sha256sum | cut -d' ' -f1
}

# tb_make_image IMG SIZE PREFILL_OFF PREFILL_LEN SEED: a sparse raw image with one
# region of pattern SEED written by the host (the guest checks it via testbed.verify=)
tb_make_image() {
  rm -f "$1"
  truncate -s "$2" "$1"
  tb_pattern gen "$5" "$4" | dd of="$1" bs=65536 seek="$3" oflag=seek_bytes conv=notrunc status=none
}

# tb_guest_lines LOG: the guest's machine-readable lines, \r stripped
tb_guest_lines() { tr -d '\r' <"$1" | grep -a -E '^(TESTBED-|testbed-blk:)' || true; }

# tb_host_verify CASE IMG LOG: check every TESTBED-REGION line of the guest log against
# the image (the guest's sha256 must equal the host's pattern, and the image must hold
# it). Prints the number of regions checked; returns 1 on the first mismatch.
tb_host_verify() {
  local c="$1" img="$2" log="$3" n=0 line kv name off len seed sha got want
  while read -r line; do
    name='' off='' len='' seed='' sha=''
    for kv in $line; do
      case "$kv" in
        name=*) name="${kv#name=}" ;; off=*) off="${kv#off=}" ;; len=*) len="${kv#len=}" ;;
        seed=*) seed="${kv#seed=}" ;; sha256=*) sha="${kv#sha256=}" ;;
      esac
    done
    got="$(tb_img_sha "$img" "$off" "$len")"
    want="$(tb_pattern sha "$seed" "$len")"
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

# tb_check_written CASE IMG LOG PREFILL_OFF PREFILL_LEN SEED: after a writing guest run,
# every region the guest reported is in the image and the host's prefill is intact.
# Prints "PASS" or "FAIL (why)".
tb_check_written() {
  local n
  if ! n="$(tb_host_verify "$1" "$2" "$3")"; then echo "FAIL (host check of the image)"
  elif [ "$n" -lt 1 ]; then echo "FAIL (guest reported no regions)"
  elif [ "$(tb_img_sha "$2" "$4" "$5")" != "$(tb_pattern sha "$6" "$5")" ]; then echo "FAIL (host prefill region was clobbered)"
  else tb_log "$1: $n guest-written regions verified in the image on the host"; echo PASS; fi
}

# tb_start VAR LOG CMD...: starts CMD in the background with stdout+stderr to LOG and
# stores its PID in the variable VAR. Use tb_stop VAR to end it.
tb_start() {
  local var="$1" log="$2"; shift 2
  "$@" >"$log" 2>&1 &
  printf -v "$var" '%s' "$!"
}

# tb_stop VAR [GRACE_SECONDS]: SIGTERM the process whose PID is in VAR, SIGKILL it after
# GRACE seconds (default 10), reap it, clear VAR. Only that PID is signalled.
tb_stop() {
  local var="$1" grace="${2:-10}" pid
  pid="${!var:-}"
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  printf -v "$var" '%s' ""
}

# tb_wait_socket SOCK PID LOG [SECONDS]: wait until SOCK exists; fail if PID exits first
tb_wait_socket() {
  local sock="$1" pid="$2" log="$3" secs="${4:-30}"
  for _ in $(seq $((secs * 10))); do
    [ -S "$sock" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then tail -n 20 "$log" >&2; tb_log "process $pid exited before creating $sock"; return 1; fi
    sleep 0.1
  done
  tb_log "no socket $sock after ${secs}s"; return 1
}

# Result table: tb_record CASE RESULT SECONDS, then tb_summary TITLE CASE...
declare -gA TB_RESULT=() TB_TIME=()
TB_OVERALL=0
tb_record() {
  TB_RESULT[$1]="$2"; TB_TIME[$1]="$3"
  [ "$2" = PASS ] || TB_OVERALL=1
}
tb_summary() {
  local title="$1" c; shift
  echo "$title summary:"
  for c in "$@"; do printf '  %-22s %-6s %ss\n' "$c" "${TB_RESULT[$c]:-NOT RUN}" "${TB_TIME[$c]:--}"; done
}
