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
