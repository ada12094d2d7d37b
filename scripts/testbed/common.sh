# Shared host-side helpers for the testbed scripts. Sourced, not executed.
# shellcheck shell=bash

TESTBED_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TESTBED_REPO="$(cd "$TESTBED_SCRIPTS/../.." && pwd)"
# Everything downloaded or built lives here (gitignored). Override with TESTBED_DIR.
TESTBED_DIR="${TESTBED_DIR:-$TESTBED_REPO/.testbed}"
TESTBED_KERNEL_DIR="$TESTBED_DIR/kernel/current"     # symlink made by setup.sh
TESTBED_DEFAULT_INITRD="$TESTBED_DIR/initramfs-blk.cpio.gz"

# The module load order from the issue. setup.sh keeps only the ones that are
# loadable modules in the downloaded kernel (built-ins need no insmod).
TESTBED_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)

tb_log() { printf '[testbed] %s\n' "$*" >&2; }
tb_die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }

# Milliseconds since the epoch (GNU date).
tb_now_ms() { date +%s%3N; }
