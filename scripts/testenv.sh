#!/usr/bin/env bash
# One command for a fresh machine: installs every real part the tests, e2e and demo use.
# Idempotent and cached under $HEXAGON_CACHE (default /var/cache/hexagon): a second run takes
# seconds. Ends by printing each component's version.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
[ "$(id -u)" = 0 ] || die "the real cluster needs root (network interfaces, iptables, containers)"
start=$SECONDS
bash scripts/install-packages.sh
bash scripts/venv.sh
bash scripts/build-kubernetes.sh
bash scripts/install-helm.sh
bash scripts/install-coredns.sh
log "base and pause images"
.venv/bin/python -c 'from testenv import images; images.ensure_pause(); images.ensure_base()'
log "test environment ready in $((SECONDS - start)) s"
printf '%-26s %s\n' \
  etcd "$(etcd --version | head -1 | awk '{print $3}')" \
  kube-apiserver "$(kube-apiserver --version | awk '{print $2}')" \
  kube-controller-manager "$(kube-controller-manager --version | awk '{print $2}')" \
  kube-scheduler "$(kube-scheduler --version | awk '{print $2}')" \
  kubelet "$(kubelet --version | awk '{print $2}')" \
  kube-proxy "$(kube-proxy --version | awk '{print $2}')" \
  kubectl "$("$HEXAGON_BIN/kubectl" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')" \
  helm "$(helm version --short)" \
  coredns "$(coredns -version | head -1 | cut -d- -f2)" \
  prometheus "$(prometheus --version 2>&1 | head -1 | awk '{print $3}')" \
  containerd "$(containerd --version | awk '{print $3}')" \
  runc "$(runc --version | head -1 | awk '{print $3}')" \
  cni-plugins "$(dpkg-query -W -f='${Version}' containernetworking-plugins)" \
  buildah "$(buildah --version | awk '{print $3}')" \
  python "$(.venv/bin/python --version | awk '{print $2}')"
