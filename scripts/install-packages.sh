#!/usr/bin/env bash
# Installs the Debian packages the real test environment needs. Idempotent: apt runs only when a
# package is missing. Services are never auto-started (the harness starts its own instances).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PACKAGES=(
  etcd-server            # etcd for the apiserver
  containerd runc        # container runtime for the kubelet
  containernetworking-plugins   # CNI bridge, host-local, portmap
  iptables conntrack iproute2 ethtool socat   # kube-proxy, kubelet and teardown
  buildah fuse-overlayfs # daemonless image builder
  debootstrap            # Debian base image for our images
  prometheus             # the real Prometheus server
  openssl                # cluster certificates
  gcc libc6-dev          # the tiny static pause binary
  nginx-light wrk        # benchmark reference and load generator
  curl ca-certificates
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d stops packages from starting their services here; we run our own instances.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
