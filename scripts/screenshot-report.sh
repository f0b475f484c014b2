#!/usr/bin/env bash
# Render an experiment's report.html in headless Chromium and save a full-page PNG, to look
# at what a user sees:  scripts/screenshot-report.sh demo-out [out.png]
# Needs Debian's chromium (apt-get install chromium); not part of the test suite.
set -euo pipefail
dir=${1:?usage: $0 EXPERIMENT_DIR [OUT.png]}
out=${2:-$dir/report-screenshot.png}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1200,5200 \
  --screenshot="$out" "file://$(realpath "$dir")/report.html" 2>/dev/null
echo "screenshot -> $out"
