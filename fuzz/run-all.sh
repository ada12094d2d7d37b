#!/usr/bin/env bash
# Every target in turn, SECONDS each (default 600), one fuzzer at a time: fuzz/run-all.sh [SECONDS] [TARGET...]
# FUZZ_EXECS=N also stops each campaign after about N executions (fuzz/run.sh's EXECS).
# Each campaign's summary goes to $FUZZ_WORK/TARGET.log as well as stdout.
set -uo pipefail
seconds=${1:-600}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
work=${FUZZ_WORK:-/tmp/virtiosharp-fuzz}
mkdir -p "$work"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(device-ring driver-ring blk inflight memory-iotlb vhost-stream)
for t in "${targets[@]}"; do
  while pgrep -x afl-fuzz >/dev/null; do sleep 5; done
  "$here/run.sh" "$t" "$seconds" ${FUZZ_EXECS:-} 2>&1 | tee "$work/$t.log" | grep -v 'Fuzzing test case'
done
