#!/usr/bin/env bash
# graphite-carbon (carbon-cache) and python3-whisper (to read the whisper files back) from Debian
# for the profile integration tests, which start their own carbon-cache on 127.0.0.1 with a
# generated config. The package's system service is never left running. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/apt.sh
. "$here/../lib/apt.sh"

if ! command -v carbon-cache >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import whisper' 2>/dev/null; then
  without_service_starts apt_install graphite-carbon python3-whisper
fi
stop_package_service carbon-cache /var/run/carbon-cache.pid
/usr/bin/python3 -c 'import whisper' >/dev/null
echo "graphite-carbon: installed ($(command -v carbon-cache))" >&2
