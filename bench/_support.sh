# Shared by bench/webhook and bench/cache-memory (sourced, not run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# PROFILE=profiling (release code with symbols, Cargo.toml) lets one build
# serve both the bench and perf. VALET=path / SUPPORT=path run other builds
# (e.g. main's, copied aside, for a before/after table in one session).
PROFILE=${PROFILE:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# One invocation for both, so that their dependencies' features unify the
# same way every time and a second build is a no-op.
# NO_BUILD=1: run what is already built (or VALET=/SUPPORT=) as it is.
[ -n "${NO_BUILD:-}" ] || cargo build --quiet --profile "$PROFILE" --locked -p storage-valet --bin valet \
  -p valet-webhook --example bench_support
VALET=${VALET:-$TARGET_DIR/$PROFILE/valet}
SUPPORT=${SUPPORT:-$TARGET_DIR/$PROFILE/examples/bench_support}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# start_cluster DIR N [STATIC_PORT]: API server with N ServiceAccounts.
start_cluster() {
  "$SUPPORT" serve "$@" >/dev/null & PIDS+=($!)
  CLUSTER_PID=$!
  for _ in $(seq 1 1200); do [ -f "$1/ready" ] && return 0; sleep 0.1; done
  echo "API server did not start" >&2; exit 1
}
# start_valet DIR PORT METRICS_PORT [FLAG...]: waits for /readyz (cache synced).
start_valet() {
  "$VALET" webhook --bind-address 127.0.0.1 --port "$2" --metrics-port "$3" \
    --tls-cert "$1/tls.crt" --tls-key "$1/tls.key" --kubeconfig "$1/kubeconfig" "${@:4}" 2>"$1/valet.log" & PIDS+=($!)
  VALET_PID=$!
  for _ in $(seq 1 1200); do
    curl -sf --cacert "$1/ca.crt" "https://localhost:$2/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$VALET_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "valet webhook not ready:" >&2; tail -5 "$1/valet.log" >&2; exit 1
}
