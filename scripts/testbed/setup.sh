#!/usr/bin/env bash
# Prepares the real-guest testbed: Debian packages, a Debian kernel and its
# virtio modules, cached under .testbed/ (gitignored).
#
#   bash scripts/testbed/setup.sh            # idempotent; a second run takes well under a second
#   TESTBED_KERNEL_PKG=linux-image-6.1.0-56-amd64 bash scripts/testbed/setup.sh   # pin a kernel
#
# Result (all under .testbed/):
#   kernel/<pkg>/vmlinuz                 the kernel
#   kernel/<pkg>/config                  its config
#   kernel/<pkg>/modules/<name>.ko       plain (uncompressed) modules, only those that are loadable
#   kernel/<pkg>/modules/modules.order   insmod order (names, one a line)
#   kernel/<pkg>/modules.status          "name module|builtin" for each of TESTBED_MODULES (common.sh)
#   kernel/<pkg>/modules.list            TESTBED_MODULES when the cache was made; a cache made
#                                        for another list is re-extracted from the cached .deb
#   kernel/current -> <pkg>
# Runs as root without a TTY or stdin; only apt is used for downloads.
set -euo pipefail
source "$(dirname "$0")/common.sh"
exec </dev/null

export DEBIAN_FRONTEND=noninteractive
APT_TIMEOUT="${APT_TIMEOUT:-900}"
APT_OPTS=(-o Dpkg::Use-Pty=0 -o APT::Sandbox::User=root -o Acquire::Retries=3)
# qemu-storage-daemon is shipped by qemu-system-common in Debian 12 (a dependency of
# qemu-system-x86; listed so the intent is explicit). xz-utils is for .ko.xz kernels.
# nbdkit and qemu-nbd (qemu-utils) are the NBD servers the NBD storage is tested against; fio measures the disk.
# libvirt (daemon, QEMU driver, virsh): the libvirt interop case drives our back-end from a libvirt domain.
PACKAGES=(qemu-system-x86 qemu-system-common qemu-utils busybox-static cpio gzip xz-utils nbdkit fio
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients dpdk dpdk-dev)

[ "$(id -u)" -eq 0 ] || tb_die "run as root (apt-get install)"
mkdir -p "$TESTBED_DIR"

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" -eq 0 ]; then
    tb_log "apt-get update"
    timeout "$APT_TIMEOUT" apt-get "${APT_OPTS[@]}" update -qq >&2
    apt_updated=1
  fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# --- 1. Debian packages, only if missing -------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_update_once
  tb_log "apt-get install ${missing[*]}"
  timeout "$APT_TIMEOUT" apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
for b in qemu-system-x86_64 qemu-storage-daemon qemu-img qemu-nbd nbdkit fio cpio gzip xz; do
  command -v "$b" >/dev/null || tb_die "$b not found after install"
done
[ -x /bin/busybox ] || tb_die "/bin/busybox (busybox-static) not found"

# --- 2. Which kernel package does linux-image-amd64 depend on? -----------------
resolve_kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
kpkg="${TESTBED_KERNEL_PKG:-}"
if [ -z "$kpkg" ]; then
  kpkg="$(resolve_kernel_pkg || true)"
  if [ -z "$kpkg" ]; then
    apt_update_once
    kpkg="$(resolve_kernel_pkg || true)"
  fi
fi
if [ -z "$kpkg" ] && [ -L "$TESTBED_DIR/kernel/current" ]; then
  kpkg="$(basename "$(readlink "$TESTBED_DIR/kernel/current")")"
  tb_log "cannot resolve linux-image-amd64 (no apt lists?); using cached $kpkg"
fi
[ -n "$kpkg" ] || tb_die "cannot determine the kernel package linux-image-amd64 depends on"

kdir="$TESTBED_DIR/kernel/$kpkg"
if [ -f "$kdir/.complete" ] && [ "$(cat "$kdir/modules.list" 2>/dev/null)" != "${TESTBED_MODULES[*]}" ]; then
  tb_log "cached $kpkg was made for another module list; extracting again"
  rm -f "$kdir/.complete"
fi
if [ -f "$kdir/.complete" ]; then
  ln -sfn "$kpkg" "$TESTBED_DIR/kernel/current"
  tb_log "kernel cached: $kpkg ($(cat "$kdir/kernel.release"))"
  sed 's/^/[testbed]   /' "$kdir/modules.status" >&2
  exit 0
fi

# --- 3. Download and extract (apt-get download + dpkg-deb -x) ------------------
debdir="$TESTBED_DIR/debs"
mkdir -p "$debdir"
deb="$(ls "$debdir/${kpkg}"_*.deb 2>/dev/null | head -n1 || true)"
if [ -z "$deb" ]; then
  tb_log "apt-get download $kpkg"
  if ! (cd "$debdir" && timeout "$APT_TIMEOUT" apt-get "${APT_OPTS[@]}" download -qq "$kpkg" >&2); then
    # stale package lists: refresh, re-resolve (the ABI name may have moved on), retry
    apt_update_once
    if [ -z "${TESTBED_KERNEL_PKG:-}" ]; then
      new="$(resolve_kernel_pkg || true)"
      if [ -n "$new" ] && [ "$new" != "$kpkg" ]; then
        tb_log "linux-image-amd64 now depends on $new; starting over"
        exec bash "$0" "$@"
      fi
    fi
    (cd "$debdir" && timeout "$APT_TIMEOUT" apt-get "${APT_OPTS[@]}" download -qq "$kpkg" >&2)
  fi
  deb="$(ls "$debdir/${kpkg}"_*.deb | head -n1)"
fi
tb_log "extracting $(basename "$deb")"
rm -rf "$kdir"
mkdir -p "$kdir/modules"
x="$kdir/extract"
dpkg-deb -x "$deb" "$x"

vmlinuz="$(ls "$x"/boot/vmlinuz-* | head -n1)"
krel="${vmlinuz##*/vmlinuz-}"
cp "$vmlinuz" "$kdir/vmlinuz"
cp "$x/boot/config-$krel" "$kdir/config"
echo "$krel" >"$kdir/kernel.release"
moddir="$x/lib/modules/$krel"
[ -d "$moddir" ] || tb_die "no /lib/modules/$krel in $deb"

# --- 4. The modules: loadable (copy as plain .ko) or built-in (skip) -------------
: >"$kdir/modules/modules.order"
: >"$kdir/modules.status"
for m in "${TESTBED_MODULES[@]}"; do
  g="${m//_/[-_]}"   # module virtio_rng is the file virtio-rng.ko, rng_core is rng-core.ko
  f="$(find "$moddir/kernel" \( -name "$g.ko" -o -name "$g.ko.xz" -o -name "$g.ko.zst" -o -name "$g.ko.gz" \) | head -n1)"
  if [ -n "$f" ]; then
    case "$f" in
      *.ko)     cp "$f" "$kdir/modules/$m.ko" ;;
      *.ko.xz)  xz -dc "$f" >"$kdir/modules/$m.ko" ;;
      *.ko.gz)  gzip -dc "$f" >"$kdir/modules/$m.ko" ;;
      *.ko.zst) command -v zstd >/dev/null || tb_die "$f needs zstd"; zstd -qdc "$f" >"$kdir/modules/$m.ko" ;;
    esac
    echo "$m" >>"$kdir/modules/modules.order"
    echo "$m module ${f#"$moddir"/}" >>"$kdir/modules.status"
  elif grep -q "/$g\.ko$" "$moddir/modules.builtin" 2>/dev/null; then
    echo "$m builtin" >>"$kdir/modules.status"
  elif [ "$m" = virtio_pci_legacy_dev ]; then
    # Only exists with CONFIG_VIRTIO_PCI_LEGACY; the testbed uses modern devices only.
    echo "$m absent (CONFIG_VIRTIO_PCI_LEGACY off; not needed for modern devices)" >>"$kdir/modules.status"
  else
    tb_die "$m is neither a module nor built into $krel"
  fi
done

rm -rf "$x"   # the extracted tree is ~400 MB; the .deb stays cached in .testbed/debs
echo "${TESTBED_MODULES[*]}" >"$kdir/modules.list"
touch "$kdir/.complete"
ln -sfn "$kpkg" "$TESTBED_DIR/kernel/current"
tb_log "kernel ready: $kpkg ($krel)"
sed 's/^/[testbed]   /' "$kdir/modules.status" >&2
