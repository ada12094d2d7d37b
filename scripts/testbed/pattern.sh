#!/bin/sh
# Deterministic test pattern, shared by the guest (busybox sh, copied into the
# initramfs as /testbed/pattern.sh) and the host (run as `busybox sh pattern.sh`,
# so both sides use the very same busybox awk and produce identical bytes).
#
#   pattern.sh gen SEED BYTES      write BYTES (a multiple of 512) of pattern to stdout
#   pattern.sh sha SEED BYTES      print the pattern's sha256 (hex only)
#
# Every 512-byte sector is distinct: it names the seed and its sector index
# and is filled with data picked by a hash of both, so a write that lands at the wrong
# offset, a stale read or a torn request shows up as a checksum mismatch.
# Sourcing this file (`. pattern.sh`) defines pattern_gen / pattern_sha only.

pattern_gen() {
  # $1 seed (letters, digits, _ - .), $2 bytes (multiple of 512)
  if [ $(( $2 % 512 )) -ne 0 ]; then
    echo "pattern_gen: $2 is not a multiple of 512" >&2
    return 1
  fi
  busybox awk -v s="$1" -v n=$(( $2 / 512 )) 'BEGIN {
    # All arithmetic stays below 2^53 (exact in awk doubles) and %x only sees
    # values below 2^31 (busybox awk saturates larger ones). n < 3,000,000 sectors.
    a = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-."
    sh = 0
    for (j = 1; j <= length(s); j++) sh = (sh * 31 + index(a, substr(s, j, 1))) % 2147483648
    # 16 fillers of 448 hex chars from an LCG seeded by the seed
    g = sh
    for (t = 0; t < 16; t++) {
      f = ""
      for (q = 0; q < 56; q++) { g = (g * 69069 + 1) % 2147483648; f = f sprintf("%08x", g) }
      F[t] = f
    }
    # sector = 63-byte header naming seed and sector + a filler picked by the sector hash + newline
    for (i = 0; i < n; i++) {
      h = ((i * 2654435761 + sh) % 2147483648 * 69069 + 1) % 2147483648
      printf "%-63.63s%s\n", sprintf("VSTB seed=%s sector=%d h=%08x", s, i, h), F[h % 16]
    }
  }'
}

pattern_sha() {
  pattern_gen "$1" "$2" | busybox sha256sum | busybox cut -d' ' -f1
}

case "${1:-}" in
  gen) pattern_gen "$2" "$3" ;;
  sha) pattern_sha "$2" "$3" ;;
  "") : ;;   # sourced
  *) echo "usage: pattern.sh gen|sha SEED BYTES" >&2; exit 2 ;;
esac
