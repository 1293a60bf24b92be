#!/usr/bin/env bash
# Growth with open tunnels (issue 7, target 7): for each size N, arcfence
# holds N idle tunnels (proxybench idle) while proxybench connrate makes
# CONNECT_N CONNECT+echo+close operations (c=32) through it; prints the idle
# tunnel's RSS and descriptors and the CPU per operation meanwhile, one JSON
# line per measurement. Loopback only (sink 127.0.0.1:9443, proxy :3130).
#
#   PB="${TMPDIR:-/tmp}/arcfence-bench/bin/proxybench" bench/grow.sh 100 1000 5000
#
# Environment: PB (proxybench, built by ../shared/peer-bench/build.sh;
# required), ARCFENCE_BIN (default: built from this tree into a temp dir),
# CONNECT_N (5000), HOLD (idle hold, seconds: 25), GODEBUG (passed on, e.g.
# gctrace=1; the proxy's log then has the GC lines).
# All tunnels come from 127.0.0.1, so limits.max_tunnels_per_client is
# raised to 10000 in the config written here.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
: "${PB:?set PB to the proxybench binary (../shared/peer-bench/build.sh builds it)}"
[ "$#" -gt 0 ] || { echo "usage: PB=... bench/grow.sh N [N...]" >&2; exit 2; }
CONNECT_N=${CONNECT_N:-5000}
HOLD=${HOLD:-25}
work=$(mktemp -d /tmp/arcfence-grow.XXXXXX)
if [ -z "${ARCFENCE_BIN:-}" ]; then
  ARCFENCE_BIN=$work/arcfence
  go build -o "$ARCFENCE_BIN" ./cmd/arcfence
fi
cat >"$work/arcfence.yaml" <<'YAML'
listen: 127.0.0.1:3130
mode: enforce
offerings: [servers]
regions: [eastus2]
allow: ["127.0.0.1:9443"]
allow_ranges: [127.0.0.0/8]
clients: [127.0.0.0/8]
admin: {listen: ""}
log: {level: warn}
limits: {max_tunnels_per_client: 10000}
YAML
ulimit -n "$(ulimit -Hn)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$PB" sink -addr 127.0.0.1:9443 -maxlife 1h >/dev/null 2>&1 &
pids+=($!)
"$PB" waitport -addr 127.0.0.1:9443 -timeout 10s
for N in "$@"; do
  "$ARCFENCE_BIN" serve --config "$work/arcfence.yaml" >"$work/arcfence-$N.log" 2>&1 &
  P=$!
  pids+=("$P")
  "$PB" waitport -addr 127.0.0.1:3130 -timeout 10s
  sleep 0.3
  timeout $((HOLD + 180)) "$PB" idle -proxy 127.0.0.1:3130 -target 127.0.0.1:9443 -n "$N" -hold "$HOLD" \
    -pid "$P" -label "idle-$N" >"$work/idle-$N.json" 2>"$work/idle-$N.err" &
  I=$!
  for _ in $(seq 600); do grep -q READY "$work/idle-$N.err" 2>/dev/null && break; sleep 0.1; done
  timeout 120 "$PB" connrate -proxy 127.0.0.1:3130 -target 127.0.0.1:9443 -n "$CONNECT_N" -c 32 \
    -pid "$P" -label "cr-with-$N" -timeout 60s 2>/dev/null || echo "{\"label\":\"cr-with-$N\",\"failed\":true}"
  wait "$I" || echo "{\"label\":\"idle-$N\",\"failed\":true}"
  cat "$work/idle-$N.json"
  kill "$P"
  wait "$P" 2>/dev/null || true
  sleep 0.5
done
echo "grow: logs in $work" >&2
