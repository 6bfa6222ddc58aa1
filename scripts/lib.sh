# Shared shell helpers for the project's setup scripts. Sourced, never executed.
# Everything long-lived (downloads, builds, images) lives in one stable cache directory outside
# the repository, keyed by version, so a second run is quick and the repo never holds binaries.
HEXAGON_CACHE=${HEXAGON_CACHE:-/var/cache/hexagon}
HEXAGON_BIN=$HEXAGON_CACHE/bin
# Pinned versions. Kubernetes 1.33 still runs its kubelet on cgroup v1 hosts (with a warning);
# every staging module of v1.33.13 is on the Go module proxy (some of v1.32.x are not).
# 1.35+ refuses unless failCgroupV1 is false.
K8S_VERSION=${K8S_VERSION:-v1.33.13}
HELM_VERSION=${HELM_VERSION:-v3.16.4}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}
export PATH="$HEXAGON_BIN:$PATH"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Run a long command, printing a heartbeat every 20 s so progress stays visible.
with_progress() {
  local label=$1; shift
  local start=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if kill -0 "$pid" 2>/dev/null && (( (SECONDS - start) % 20 < 5 )); then
      log "$label: still running ($((SECONDS - start)) s)"
    fi
  done
  wait "$pid"
}
