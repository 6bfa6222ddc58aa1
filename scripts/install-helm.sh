#!/usr/bin/env bash
# Builds helm from the Go module proxy at a pinned version (no registry ships its binary here).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$HEXAGON_CACHE/helm/$HELM_VERSION
if [ ! -x "$out/helm" ]; then
  mkdir -p "$out"
  log "building helm $HELM_VERSION from the Go module proxy (about a minute)"
  with_progress "go install helm" env CGO_ENABLED=0 GOBIN="$out" GOFLAGS= go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
mkdir -p "$HEXAGON_BIN"
ln -sfn "$out/helm" "$HEXAGON_BIN/helm"
