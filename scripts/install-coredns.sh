#!/usr/bin/env bash
# Builds CoreDNS from the Go module proxy at a pinned version: the cluster DNS of the local
# single-node cluster (no image of it can be pulled here; it runs as a host process).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$HEXAGON_CACHE/coredns/$COREDNS_VERSION
if [ ! -x "$out/coredns" ]; then
  mkdir -p "$out"
  log "building coredns $COREDNS_VERSION from the Go module proxy (a few minutes)"
  with_progress "go install coredns" env CGO_ENABLED=0 GOBIN="$out" GOFLAGS= go install -trimpath \
    -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
fi
mkdir -p "$HEXAGON_BIN"
ln -sfn "$out/coredns" "$HEXAGON_BIN/coredns"
