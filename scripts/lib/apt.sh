# shellcheck shell=bash
# apt_install PKG...: install Debian packages if missing; serialised by a lock so concurrent
# provisioners don't fight over dpkg; `apt-get update` at most once a day.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  (
    flock 9
    local stamp=/var/lib/apt/periodic/opsagent-update-stamp
    if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && mkdir -p "$(dirname "$stamp")" && touch "$stamp"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  ) 9>/tmp/opsagent-apt.lock
}

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
