#!/usr/bin/env bash
# Prometheus server (Debian package `prometheus`) for the profile integration tests, which start
# their own instance on 127.0.0.1 with a generated config. The package's system service is never
# left running: installs go through a policy-rc.d that forbids starting services, and a daemon a
# maintainer script started anyway is stopped. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/apt.sh
. "$here/../lib/apt.sh"

if ! command -v prometheus >/dev/null 2>&1; then
  without_service_starts apt_install prometheus
fi
stop_package_service prometheus /run/prometheus/prometheus.pid
echo "prometheus: installed ($(prometheus --version 2>&1 | head -1))" >&2
