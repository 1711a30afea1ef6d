#!/usr/bin/env bash
# graphite-carbon (carbon-cache) and python3-whisper (to read the whisper files back) from Debian
# for the profile integration tests, which start their own carbon-cache on 127.0.0.1 with a
# generated config. The package's system service is never left running. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/apt.sh
. "$here/../lib/apt.sh"

# Debian maintainer scripts start a package's daemon through invoke-rc.d unless policy-rc.d says
# no (exit 101). Many images ship one; otherwise put ours in place for the install and take it
# away again (only if it is still ours).
without_service_starts() {
  local prc=/usr/sbin/policy-rc.d mark="# opsagent-provision: no service starts"
  if [ -e "$prc" ]; then "$@"; return; fi
  printf '#!/bin/sh\n%s\nexit 101\n' "$mark" >"$prc" && chmod 755 "$prc"
  local rc=0
  "$@" || rc=$?
  grep -qF "$mark" "$prc" 2>/dev/null && rm -f "$prc"
  return "$rc"
}

# stop_package_service NAME PIDFILE: stop a daemon the package started anyway (only the one its
# init script recorded in PIDFILE, never the tests' own instances) and keep it off at boot.
stop_package_service() {
  local name=$1 pidfile=$2 pid
  if [ -f "$pidfile" ] && pid=$(cat "$pidfile") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "$name: stopping the package's service (pid $pid)" >&2
    kill "$pid" 2>/dev/null || true
  fi
  if command -v update-rc.d >/dev/null 2>&1 && [ -e "/etc/init.d/$name" ]; then
    update-rc.d "$name" disable >/dev/null 2>&1 || true
  fi
}

if ! command -v carbon-cache >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import whisper' 2>/dev/null; then
  without_service_starts apt_install graphite-carbon python3-whisper
fi
stop_package_service carbon-cache /var/run/carbon-cache.pid
/usr/bin/python3 -c 'import whisper' >/dev/null
echo "graphite-carbon: installed ($(command -v carbon-cache))" >&2
