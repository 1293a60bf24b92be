#!/usr/bin/env bash
# Records testdata/serve-learn.log and testdata/serve-enforce.log: the logs
# of a real `arcfence serve` (proxy and DNS filter) with a `servers` config in
# eastus2, hit through curl and dig by Kubernetes, data-services,
# other-region and unknown destinations. Loopback only (the proxy
# end-to-end's stub resolver and TLS origin on 127.0.0.78:443). Run from
# the repository root: bash internal/learn/testdata/record-serve.sh
# ($ARCFENCE may name a prebuilt binary).
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=internal/learn/testdata
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
wait_line() { for _ in $(seq 1 200); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
free_port() {
  for _ in $(seq 1 50); do
    local p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

AF=${ARCFENCE:-$TMP/arcfence}
[ -n "${ARCFENCE:-}" ] || go build -o "$AF" ./cmd/arcfence
go build -o "$TMP/e2etool" ./proxy/internal/e2etool

NAMES=(
  eastus2.dp.kubernetesconfiguration.azure.com mcr.microsoft.com eastus2.obo.arc.azure.com
  arcdataservicesrow1.azurecr.io abc.ods.opinsights.azure.com
  telemetry.westeurope.arcdataservices.com westeurope.dp.kubernetesconfiguration.azure.com
  api.github.com downloads.example.net login.microsoftonline.com gbl.his.arc.azure.com
)
hosts=() answers=()
for n in "${NAMES[@]}"; do hosts+=(--host "$n"); answers+=(-a "$n=127.0.0.78"); done
"$AF" certs init "$TMP/pki" "${hosts[@]}" >/dev/null
"$TMP/e2etool" dns -listen 127.0.0.1:0 "${answers[@]}" >"$TMP/dns.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/dns.out" '^ready '
UPSTREAM=$(awk '/^ready /{print $2; exit}' "$TMP/dns.out")
"$TMP/e2etool" origin -listen 127.0.0.78:443 -cert "$TMP/pki/server.pem" -key "$TMP/pki/server-key.pem" >"$TMP/origin.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/origin.out" '^ready '

for mode in learn enforce; do
  PORT=$(free_port); DPORT=$(free_port)
  cat >"$TMP/arcfence.yaml" <<YAML
listen: 127.0.0.1:$PORT
mode: $mode
offerings: [servers]
regions: [eastus2]
resolver: $UPSTREAM
allow_ranges: [127.0.0.78/32]
dns: {listen: 127.0.0.1:$DPORT, upstream: [$UPSTREAM]}
admin: {listen: ""}
log: {level: info, fold_window: 1s}
limits: {shutdown_grace: 2s, dial_timeout: 2s}
YAML
  "$AF" serve --config "$TMP/arcfence.yaml" 2>"$TMP/$mode.log" &
  pid=$!
  PIDS+=($pid)
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  get() { curl -s --max-time 5 --http1.1 -x "http://127.0.0.1:$PORT" --cacert "$TMP/pki/ca.pem" -o /dev/null "https://$1/" || true; }
  ask() { dig +short +time=2 +tries=1 -p "$DPORT" @127.0.0.1 "$@" >/dev/null || true; }
  for _ in $(seq 1 30); do get eastus2.dp.kubernetesconfiguration.azure.com; done
  for _ in 1 2 3; do get mcr.microsoft.com; done
  get eastus2.obo.arc.azure.com:8084
  get arcdataservicesrow1.azurecr.io
  get abc.ods.opinsights.azure.com
  for _ in 1 2; do get telemetry.westeurope.arcdataservices.com; done
  get westeurope.dp.kubernetesconfiguration.azure.com
  for _ in 1 2 3 4; do get api.github.com; done
  get downloads.example.net:8443
  get gbl.his.arc.azure.com:8443
  get login.microsoftonline.com          # allowed
  for _ in 1 2 3; do ask eastus2.dp.kubernetesconfiguration.azure.com A; done
  ask unknown.example.org AAAA
  ask login.microsoftonline.com A        # allowed
  sleep 1.5                              # one fold window: the summaries are written
  for _ in 1 2; do get eastus2.dp.kubernetesconfiguration.azure.com; done
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  cp "$TMP/$mode.log" "$OUT/serve-$mode.log"
  echo "recorded $OUT/serve-$mode.log: $(grep -c '"msg":"\(denied\|would deny\)"' "$OUT/serve-$mode.log") refusal lines"
done
