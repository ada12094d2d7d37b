#!/usr/bin/env bash
# Coverage-guided fuzzing of one target with AFL++ and SharpFuzz (a bench script, not CI; CI replays the corpora).
#
#   fuzz/run.sh TARGET [SECONDS [EXECS]]   default 600 s; with EXECS it also stops after about that many executions
#                                          (afl-fuzz -E); targets: VirtioSharp.Fuzz prints them without arguments
#
# Installs afl++ (Debian) and the sharpfuzz dotnet tool if missing, publishes Release into $FUZZ_WORK (default
# /tmp/virtiosharp-fuzz, outside git), instruments the library assemblies there, and runs afl-fuzz with
# fuzz/corpus/TARGET as seeds into $FUZZ_WORK/findings/TARGET (resumed if it exists). At the end it prints
# execs_done, exec/s, crashes, hangs and coverage from fuzzer_stats and copies every crash input into
# fuzz/regressions/TARGET/ (triage them: a crash is a finding until fixed or written down in fuzz/FINDINGS.md).
# One fuzzer at a time on a small machine: the script refuses to start while another afl-fuzz runs.
set -euo pipefail
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
execs=${3:-}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-/tmp/virtiosharp-fuzz}
export PATH="$PATH:$HOME/.dotnet/tools"

command -v afl-fuzz >/dev/null || { apt-get update -qq && apt-get install -y -qq afl++; }
command -v sharpfuzz >/dev/null || dotnet tool install --global SharpFuzz.CommandLine --version 2.3.0
if pgrep -x afl-fuzz >/dev/null; then echo "another afl-fuzz is running; run one at a time" >&2; exit 1; fi
[ -d "$root/fuzz/corpus/$target" ] || { echo "no seed corpus fuzz/corpus/$target" >&2; exit 1; }

# Build the committed tree (git HEAD), not the work tree: edits made while a campaign starts cannot leak into it,
# and the figures belong to a commit. A fresh publish each run: sharpfuzz rewrites assemblies in place and refuses
# already instrumented ones.
rm -rf "$work/bin" "$work/src"
mkdir -p "$work/src"
git -C "$root" archive HEAD | tar -x -C "$work/src"
echo "fuzzing $target at $(git -C "$root" rev-parse --short HEAD)"
dotnet publish "$work/src/fuzz/VirtioSharp.Fuzz/VirtioSharp.Fuzz.csproj" -c Release -o "$work/bin" -nologo -v q
# Only the code under test gets coverage edges; the harness and the runtime stay uninstrumented.
for asm in VirtioSharp.dll VirtioSharp.VhostUser.dll; do sharpfuzz "$work/bin/$asm"; done

# dotnet itself has no AFL instrumentation: SharpFuzz speaks the forkserver protocol from managed code.
export AFL_SKIP_BIN_CHECK=1
# Debian's default core_pattern pipes to a handler; crashes here are managed exceptions reported by SharpFuzz.
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
# No CPU governor to manage on a shared VM.
export AFL_SKIP_CPUFREQ=1
# afl-fuzz and the target on one core (-b, FUZZ_CPU, default 1): vhost-stream's ring worker threads then never wake
# across cores, which measured about half the CPU per input; the other targets are single-threaded anyway.
cpu=${FUZZ_CPU:-1}
# Continue a previous campaign's queue when the findings dir exists.
export AFL_AUTORESUME=1
export AFL_NO_UI=1
mkdir -p "$work/findings"
out="$work/findings/$target"
# -t 5000: a hang is an input that runs 5 s (first runs pay for JIT; GC pauses are short). Give -t a plain number:
# AFL++ 4.04c reads '5000+' as "no -t" and picks a 20 ms limit. Fuzzer.Run keeps every input in one process, so a
# timeout kills that process and afl-fuzz stops ("Unable to communicate with fork server"); the input it was
# running is then .cur_input, kept below as a hang regression.
# -m none: the CLR reserves far more virtual memory than it uses.
rc=0
limits=(-b "$cpu" -V "$seconds")
[ -z "$execs" ] || limits+=(-E "$execs")
afl-fuzz -i "$root/fuzz/corpus/$target" -o "$out" -t 5000 -m none "${limits[@]}" -- \
  dotnet "$work/bin/VirtioSharp.Fuzz.dll" "$target" || rc=$?

stats="$out/default/fuzzer_stats"
if [ -f "$stats" ]; then
  echo "== $target: $(date -u +%FT%TZ)"
  grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|bitmap_cvg|edges_found|total_edges|stability)\b' "$stats"
fi
mkdir -p "$root/fuzz/regressions/$target"
for f in "$out"/default/crashes/id:* "$out"/default/hangs/id:*; do
  [ -e "$f" ] || continue
  cp "$f" "$root/fuzz/regressions/$target/crash-$(sha1sum "$f" | cut -c1-12)"
done
if [ "$rc" -ne 0 ] && [ -f "$out/default/.cur_input" ]; then
  echo "afl-fuzz exited with $rc: the process died on the input it was running (a hang or a fatal crash)"
  cp "$out/default/.cur_input" "$root/fuzz/regressions/$target/hang-$(sha1sum "$out/default/.cur_input" | cut -c1-12)"
fi
exit "$rc"
