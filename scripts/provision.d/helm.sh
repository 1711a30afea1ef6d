# helm, for rendering deploy/helm/opsagent in the test suite (helm template, offline):
# `go install` from the Go module proxy into $OPSAGENT_CACHE/bin, once.
set -euo pipefail
HELM_VERSION=${HELM_VERSION:-v3.22.0}
bin="$OPSAGENT_CACHE/bin"
mkdir -p "$bin"
if [ -x "$bin/helm" ] && [ "$(cat "$bin/helm.version" 2>/dev/null)" = "$HELM_VERSION" ]; then
  exit 0
fi
command -v go >/dev/null || { echo "helm.sh: go not found" >&2; exit 1; }
echo "helm.sh: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION (a few minutes, once)" >&2
GOBIN="$bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "$HELM_VERSION" >"$bin/helm.version"
