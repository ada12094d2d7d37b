#!/usr/bin/env bash
# Barrier mutation check (issue 12 item 4), not run in CI: for every ring barrier call site in the four ring files,
# delete it (and, separately, downgrade it from the negotiated strength to SMP), rebuild, run the tests that guard
# ordering (OrderingTests, ScenarioTests) and record whether any failed. The tree is restored after each mutant.
#
#   bash scripts/mutate-barriers.sh                 # all sites, both mutations; table on stdout
#   bash scripts/mutate-barriers.sh D1 S2           # only these sites
#
# Output: one line per mutant "site mutation caught|MISSED failing-tests". About half a minute per mutant on an idle 2-core machine.
set -uo pipefail
cd "$(dirname "$0")/.."
Q=src/VirtioSharp/Queues
files="$Q/DriverQueue.cs $Q/PackedDriverRing.cs $Q/DeviceQueue.cs $Q/PackedDeviceRing.cs"
# The unmutated library goes back into the test output at the end.
trap 'git checkout -q -- $files; dotnet build src/VirtioSharp -c Release -nologo -v q >/dev/null 2>&1; cp src/VirtioSharp/bin/Release/net10.0/VirtioSharp.dll tests/VirtioSharp.Tests/bin/Release/net10.0/' EXIT
dotnet build tests/VirtioSharp.Tests -c Release -nologo -v q >/dev/null || { echo "the unmutated tree does not build"; exit 1; }

# site  file  anchor (text of the call)  occurrence of the anchor in the file
sites=(
  "D1 DriverQueue.cs _barriers.Publish(); 1"
  "D2 DriverQueue.cs _barriers.Full(); 1"
  "D3 DriverQueue.cs _barriers.Full(); 2"
  "P1 PackedDriverRing.cs _barriers.Publish(); 1"
  "P2 PackedDriverRing.cs _barriers.Full(); 1"
  "P3 PackedDriverRing.cs _barriers.Full(); 2"
  "S1 DeviceQueue.cs _mem.Barrier(BarrierOp.Full,_barriers); 1"
  "S2 DeviceQueue.cs _mem.Barrier(BarrierOp.Write,_barriers); 1"
  "S3 DeviceQueue.cs _mem.Barrier(BarrierOp.Write,_barriers); 2"
  "S4 DeviceQueue.cs _mem.Barrier(BarrierOp.Write,_barriers); 3"
  "S5 DeviceQueue.cs _mem.Barrier(BarrierOp.Full,_barriers); 2"
  "S6 DeviceQueue.cs _mem.Barrier(BarrierOp.Full,_barriers); 3"
  "K1 PackedDeviceRing.cs _mem.Barrier(BarrierOp.Write,_barriers); 1"
  "K2 PackedDeviceRing.cs _mem.Barrier(BarrierOp.Write,_barriers); 2"
  "K3 PackedDeviceRing.cs _mem.Barrier(BarrierOp.Write,_barriers); 3"
  "K4 PackedDeviceRing.cs _mem.Barrier(BarrierOp.Full,_barriers); 1"
  "K5 PackedDeviceRing.cs _mem.Barrier(BarrierOp.Full,_barriers); 2"
)
want=" $* "

mutate() {   # file anchor occurrence mode(delete|smp)
  python3 - "$@" <<'PY'
import sys
path, anchor, occ, mode = sys.argv[1], sys.argv[2].replace(",", ", "), int(sys.argv[3]), sys.argv[4]
s = open(path).read()
at = -1
for _ in range(occ):
    at = s.index(anchor, at + 1)
if mode == "delete":
    new = "/* mutant: barrier deleted */"
elif anchor.startswith("_mem."):
    new = anchor.replace("_barriers", "VirtioSharp.Dma.BarrierKind.Smp")
else:
    new = anchor.replace("_barriers.", "new RingBarriers(VirtioSharp.Dma.BarrierKind.Smp, _barriers.Model).")
open(path, "w").write(s[:at] + new + s[at + len(anchor):])
PY
}

for entry in "${sites[@]}"; do
  read -r site file anchor occ <<<"$entry"
  [ -n "$*" ] && [[ "$want" != *" $site "* ]] && continue
  for mode in delete smp; do
    git checkout -q -- $files
    mutate "$Q/$file" "$anchor" "$occ" "$mode"
    # Only the core library changes (method bodies): build it alone and drop it into the test output.
    if ! dotnet build src/VirtioSharp -c Release -nologo -v q >/tmp/mutate-build.$$ 2>&1; then
      echo "$site $mode BUILD-FAILED"; tail -5 /tmp/mutate-build.$$; continue
    fi
    cp src/VirtioSharp/bin/Release/net10.0/VirtioSharp.dll tests/VirtioSharp.Tests/bin/Release/net10.0/
    out=$(dotnet test tests/VirtioSharp.Tests -c Release --no-build --filter 'FullyQualifiedName~OrderingTests|FullyQualifiedName~ScenarioTests' 2>&1)
    failed=$(grep -oE 'Failed VirtioSharp\.Tests\.[A-Za-z]+\.[A-Za-z0-9]+' <<<"$out" | sed 's/Failed VirtioSharp\.Tests\.//' | sort | uniq -c | awk '{print $2"×"$1}' | paste -sd' ')
    if grep -qE 'Failed!' <<<"$out"; then echo "$site $mode caught $failed"; else echo "$site $mode MISSED"; fi
  done
done
rm -f /tmp/mutate-build.$$
