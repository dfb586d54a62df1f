#!/usr/bin/env bash
# Install Debian's Chromium for the dashboard's browser tests when it is missing, and print
# its path (ROUTILUX_CHROMIUM). Tests drive it with Playwright's executable_path; nothing is
# downloaded by a test tool.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null) >&2
fi
command -v chromium
