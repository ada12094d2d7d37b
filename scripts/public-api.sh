#!/usr/bin/env bash
# Regenerates the public API baselines (PublicAPI.Shipped.txt / PublicAPI.Unshipped.txt beside each library package)
# from Microsoft.CodeAnalysis.PublicApiAnalyzers' own diagnostics: it builds the solution with warnings not as errors,
# adds every symbol RS0016 reports as undeclared to PublicAPI.Unshipped.txt and drops every line RS0017 reports as
# gone, then builds again to show the baselines are complete.
#
#   bash scripts/public-api.sh          # record API changes in PublicAPI.Unshipped.txt (review the diff)
#   bash scripts/public-api.sh --ship   # the same, then move every Unshipped line to Shipped (at a release)
set -euo pipefail
cd "$(dirname "$0")/.."
ship=0
[ "${1:-}" = "--ship" ] && ship=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
dotnet build VirtioSharp.slnx -c Release -nologo -v q --no-incremental -p:TreatWarningsAsErrors=false >"$log" 2>&1 || true
python3 - "$log" "$ship" <<'PY'
import collections, os, re, sys
log, ship = sys.argv[1], sys.argv[2] == "1"
# "... warning RS0016: Symbol 'X' is not part of the declared public API (...) [/path/Project.csproj]"
pat = re.compile(r"warning (RS0016|RS0017): Symbol '(.*)' is (?:not part of the declared public API|part of the declared API, but is either not public or could not be found).* \[(.*\.csproj)\]$")
add, remove = collections.defaultdict(set), collections.defaultdict(set)
for line in open(log, encoding="utf-8"):
    m = pat.search(line.rstrip("\n"))
    if m:
        (add if m.group(1) == "RS0016" else remove)[os.path.dirname(m.group(3))].add(m.group(2))
def read(path):
    if not os.path.exists(path): return []
    return [l for l in open(path, encoding="utf-8").read().splitlines() if l and not l.startswith("#")]
def write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("#nullable enable\n" + "".join(l + "\n" for l in sorted(set(lines), key=str.casefold)))
for proj in sorted(set(add) | set(remove)):
    shipped, unshipped = os.path.join(proj, "PublicAPI.Shipped.txt"), os.path.join(proj, "PublicAPI.Unshipped.txt")
    s = [l for l in read(shipped) if l not in remove[proj]]
    u = [l for l in read(unshipped) if l not in remove[proj]] + sorted(add[proj])
    write(shipped, s); write(unshipped, u)
    print(f"{os.path.relpath(proj)}: +{len(add[proj])} -{len(remove[proj])}")
if ship:
    for root, _, files in os.walk("src"):
        if "PublicAPI.Unshipped.txt" in files:
            s, u = os.path.join(root, "PublicAPI.Shipped.txt"), os.path.join(root, "PublicAPI.Unshipped.txt")
            write(s, read(s) + read(u)); write(u, [])
PY
other=$(grep -o 'warning RS00[0-9]*: [^[]*' "$log" | grep -v -E 'RS001[67]' | sort -u || true)
[ -z "$other" ] || printf 'other public API diagnostics (fix by hand):\n%s\n' "$other" >&2
dotnet build VirtioSharp.slnx -c Release -nologo -v q -warnaserror >"$log" 2>&1 || { grep -E 'error' "$log" | sort -u | head -20 >&2; echo "the build still fails" >&2; exit 1; }
echo "public API baselines are complete"
