#!/usr/bin/env bash
# Builds a busybox-static initramfs that runs one guest test script and powers off.
#
#   bash scripts/testbed/build-initramfs.sh GUEST_SCRIPT OUT.cpio.gz
#
# Contents: /bin/busybox (+ applet symlinks), /init (scripts/testbed/init.sh),
# /test.sh (= GUEST_SCRIPT), /testbed/pattern.sh, and the loadable virtio
# modules of .testbed/kernel/current with their load order in
# /lib/modules/modules.order. Run setup.sh first. Takes well under a second.
set -euo pipefail
source "$(dirname "$0")/common.sh"

[ $# -eq 2 ] || tb_die "usage: build-initramfs.sh GUEST_SCRIPT OUT.cpio.gz"
guest="$1"; out="$2"
[ -f "$guest" ] || tb_die "no guest script $guest"
mods="$TESTBED_KERNEL_DIR/modules"
[ -f "$mods/modules.order" ] || tb_die "no kernel modules in $mods; run scripts/testbed/setup.sh"
[ -x /bin/busybox ] || tb_die "/bin/busybox missing; run scripts/testbed/setup.sh"

mkdir -p "$TESTBED_DIR/tmp" "$(dirname "$out")"
root="$(mktemp -d "$TESTBED_DIR/tmp/initramfs.XXXXXX")"
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules,testbed}
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do
  [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done
ln -s bin "$root/sbin"
install -m 0755 "$TESTBED_SCRIPTS/init.sh" "$root/init"
install -m 0755 "$guest" "$root/test.sh"
install -m 0644 "$TESTBED_SCRIPTS/pattern.sh" "$root/testbed/pattern.sh"
while read -r m; do
  [ -n "$m" ] && cp "$mods/$m.ko" "$root/lib/modules/"
done <"$mods/modules.order"
cp "$mods/modules.order" "$root/lib/modules/modules.order"

# Reproducible archive: fixed mtimes, root ownership, sorted names, no gzip timestamp.
find "$root" -exec touch -h -d @0 {} +
tmp="$out.tmp.$$"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n >"$tmp"
mv "$tmp" "$out"
tb_log "initramfs $out ($(stat -c %s "$out") bytes, test $(basename "$guest"))"
