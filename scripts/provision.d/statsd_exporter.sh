#!/usr/bin/env bash
# prometheus/statsd_exporter for the profile integration tests, built with `go install` from the Go
# module proxy into $OPSAGENT_CACHE/bin. Idempotent: an existing binary of the pinned version is
# reused; STATSD_EXPORTER_VERSION overrides the pin.
set -euo pipefail

STATSD_EXPORTER_VERSION=${STATSD_EXPORTER_VERSION:-v0.31.0}
CACHE=${OPSAGENT_CACHE:-$HOME/.cache/opsagent}
bin="$CACHE/bin/statsd_exporter"
stamp="$CACHE/bin/.statsd_exporter.version"

if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$STATSD_EXPORTER_VERSION" ]; then
  echo "statsd_exporter $STATSD_EXPORTER_VERSION: cached in $bin" >&2
  exit 0
fi

command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || {
  echo "statsd_exporter: no go toolchain on PATH (or /usr/local/go/bin)" >&2
  exit 1
}
GO=$(command -v go || echo /usr/local/go/bin/go)

mkdir -p "$CACHE/bin"
work=$(mktemp -d "$CACHE/bin/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "statsd_exporter $STATSD_EXPORTER_VERSION: go install (first run only)" >&2
# Build into a scratch GOBIN and move into place, so an interrupted build never leaves a
# half-written binary where the fixtures look for it. GOTOOLCHAIN=local: use the machine's go.
(cd "$work" && GOBIN="$work" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
  "$GO" install "github.com/prometheus/statsd_exporter@$STATSD_EXPORTER_VERSION")
"$work/statsd_exporter" --version >/dev/null 2>&1
mv -f "$work/statsd_exporter" "$bin"
echo "$STATSD_EXPORTER_VERSION" >"$stamp"
echo "statsd_exporter $STATSD_EXPORTER_VERSION: installed in $bin" >&2
