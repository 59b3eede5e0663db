#!/usr/bin/env bash
# The one entry point for a fresh Debian 12 machine: installs what the build needs (as
# root, or through sudo), then runs the Makefile target.
#   ./dev.sh demo        build (Release) and run the main job end to end in a temp dir
#   ./dev.sh test        build and run every test with CTest
#   ./dev.sh test-asan   the tests again under AddressSanitizer + UBSan
#   ./dev.sh fuzz        build the libFuzzer targets (clang) and run each briefly
#   ./dev.sh bench       the side-by-side benchmark on the shared corpus (long)
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
exec make "${@:-demo}"
