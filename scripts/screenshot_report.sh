#!/usr/bin/env bash
# Render RUN_DIR/report.html in headless Chromium (Debian's `chromium` package) to a PNG, to look at it.
# Usage: scripts/screenshot_report.sh RUN_DIR [OUT.png]
set -euo pipefail
run="${1:?usage: $0 RUN_DIR [OUT.png]}"
out="${2:-$run/report.png}"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1200,2600 --screenshot="$(realpath -m "$out")" "file://$(realpath "$run")/report.html" 2>/dev/null
echo "$out"
