#!/usr/bin/env bash
# The main job: builds the CLI and runs `virtio-sharp demo` (no arguments needed).
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet run --project src/VirtioSharp.Cli -c Release -- demo "$@"
