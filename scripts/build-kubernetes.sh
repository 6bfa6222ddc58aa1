#!/usr/bin/env bash
# Builds the Kubernetes server binaries and kubectl from the Go module proxy at one pinned version.
# k8s.io/kubernetes cannot be `go install`ed (its go.mod points the k8s.io/* staging modules at
# local paths), so we build through a wrapper module that requires it and replaces every staging
# module with its published v0.X.Y twin. Binaries are cached per version; a second run is instant.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
command -v go >/dev/null || die "go is required to build Kubernetes (the machine image ships it)"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
out=$HEXAGON_CACHE/k8s/$K8S_VERSION
mkdir -p "$out" "$HEXAGON_BIN"
todo=()
for b in "${BINARIES[@]}"; do [ -x "$out/$b" ] || todo+=("$b"); done
if ((${#todo[@]})); then
  src=$HEXAGON_CACHE/src/k8s-$K8S_VERSION
  mkdir -p "$src"
  staging_version=v0.${K8S_VERSION#v1.}
  if [ ! -f "$src/go.mod" ]; then
    log "fetching k8s.io/kubernetes@$K8S_VERSION module metadata"
    gomod=$(cd "$src" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module hexagon.dev/k8s-build"
      echo
      echo "go 1.23"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      # every `k8s.io/x => ./staging/src/k8s.io/x` becomes `k8s.io/x => k8s.io/x v0.Y.Z`
      # (the sample-* modules are not published for every release, and nothing here imports them)
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#replace \1 => \1 '"$staging_version"'#p' "$gomod" \
        | grep -v 'k8s.io/sample-'
    } > "$src/go.mod.tmp"
    printf 'package tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n' > "$src/tools.go"
    mv "$src/go.mod.tmp" "$src/go.mod"
  fi
  cd "$src"
  log "resolving Go modules for Kubernetes $K8S_VERSION (first run downloads ~300 MB)"
  with_progress "go mod download" env GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>"$src/tidy.log" || { tail -20 "$src/tidy.log"; die "go mod tidy failed"; }
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  for b in "${todo[@]}"; do
    pkg=k8s.io/kubernetes/cmd/$b
    log "building $b $K8S_VERSION (a few minutes each on 2 cores)"
    with_progress "go build $b" env CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "$ldflags" -o "$out/$b.tmp" "$pkg"
    mv "$out/$b.tmp" "$out/$b"
  done
fi
for b in "${BINARIES[@]}"; do ln -sfn "$out/$b" "$HEXAGON_BIN/$b"; done
