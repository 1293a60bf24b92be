#!/usr/bin/env bash
# End-to-end check of `arcfence serve` (issue 3), loopback only:
#  - a stub DNS server (proxy/internal/e2etool) answers Arc names with 127.0.0.x
#    and is the proxy's `resolver`;
#  - a TLS origin listens on 127.0.0.77:443 with a certificate from
#    `arcfence certs init` (so HTTPS through the proxy verifies end to end);
#  - curl -x through the proxy: an allowed name reaches the origin; denied
#    names get 403 with X-Arcfence-Reason and a refusal log line;
#  - a websocket inside the tunnel; a config reload by SIGHUP; SIGTERM exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

. .ci/lib.sh
e2e_init e2e-10-proxy
FAIL_LOGS=("$TMP/arcfence.log")
need_tools curl=curl

say "building"
go build -o "$TMP/arcfence" ./cmd/arcfence
go build -o "$TMP/e2etool" ./proxy/internal/e2etool
AF="$TMP/arcfence"
"$AF" serve --help >/dev/null 2>&1 || fail "the binary has no serve command (cmd/arcfence/root.go must add newServeCmd() and newCertsCmd())"

"$AF" certs init "$TMP/pki" --host management.azure.com --host gbl.his.arc.azure.com >/dev/null \
  || fail "arcfence certs init"
[ -s "$TMP/pki/ca.pem" ] && [ -s "$TMP/pki/server.pem" ] && [ -s "$TMP/pki/server-key.pem" ] \
  || fail "certs init did not write its files"

"$TMP/e2etool" dns -listen 127.0.0.1:0 \
  -a management.azure.com=127.0.0.77 -a gbl.his.arc.azure.com=127.0.0.77 \
  -a private.his.arc.azure.com=10.9.9.9 >"$TMP/dns.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/dns.out" '^ready ' || fail "dns stub did not start"
DNS_ADDR=$(awk '/^ready /{print $2; exit}' "$TMP/dns.out")

"$TMP/e2etool" origin -listen 127.0.0.77:443 -cert "$TMP/pki/server.pem" -key "$TMP/pki/server-key.pem" \
  >"$TMP/origin.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/origin.out" '^ready ' || fail "origin did not start: $(cat "$TMP/origin.out")"

# start_arcfence: write the config for a free port and start serve (3 tries:
# the port can be taken between the check and the bind).
start_arcfence() {
  for _ in 1 2 3; do
    PORT=$(free_port) || fail "no free port"
    PROXY="http://127.0.0.1:$PORT"
    cat >"$TMP/arcfence.yaml" <<YAML
listen: 127.0.0.1:$PORT
regions: [eastus2]
offerings: [servers]
resolver: $DNS_ADDR
allow_ranges: [127.0.0.77/32]
admin: {listen: ""}
log: {level: info, tunnels: info}
limits: {shutdown_grace: 5s}
YAML
    say "starting arcfence serve on 127.0.0.1:$PORT (resolver $DNS_ADDR)"
    "$AF" serve --config "$TMP/arcfence.yaml" 2>"$TMP/arcfence.log" &
    AF_PID=$!
    PIDS+=($AF_PID)
    for _ in $(seq 1 200); do
      kill -0 "$AF_PID" 2>/dev/null || break
      (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
      sleep 0.1
    done
    grep -q "already in use" "$TMP/arcfence.log" || return 1
  done
  return 1
}
start_arcfence || fail "arcfence did not listen"

say "allowed: https://management.azure.com through the proxy"
out=$(curl -sS --max-time 20 -x "$PROXY" --cacert "$TMP/pki/ca.pem" https://management.azure.com/) \
  || fail "curl to an allowed name failed"
[[ "$out" == "hello from origin management.azure.com over HTTP/2.0" ]] || fail "unexpected body: $out"
out=$(curl -sS --max-time 20 --http1.1 -x "$PROXY" --cacert "$TMP/pki/ca.pem" https://gbl.his.arc.azure.com/) \
  || fail "curl (HTTP/1.1) to *.his.arc.azure.com failed"
[[ "$out" == "hello from origin gbl.his.arc.azure.com over HTTP/1.1" ]] || fail "unexpected body: $out"

# deny NAME REASON: curl through the proxy gets 403 with the reason header and a log line.
deny() {
  local name=$1 reason=$2
  rm -f "$TMP/h"
  if curl -sS --max-time 20 -o /dev/null -D "$TMP/h" -x "$PROXY" --cacert "$TMP/pki/ca.pem" "https://$name/" 2>"$TMP/curl.err"; then
    fail "$name was admitted"
  fi
  grep -q '^HTTP/1\.[01] 403' "$TMP/h" || fail "$name: no 403 in: $(cat "$TMP/h" "$TMP/curl.err")"
  grep -qi "^X-Arcfence-Reason: $reason" "$TMP/h" || fail "$name: no X-Arcfence-Reason: $reason in: $(cat "$TMP/h")"
  wait_line "$TMP/arcfence.log" "\"host\":\"$name\".*\"reason\":\"$reason\".*\"msg\":\"denied\"" \
    || fail "$name: no refusal line for $reason"
  say "denied: $name -> 403 $reason"
}
deny example.org not-in-allowlist
deny private.his.arc.azure.com private-address

say "websocket inside the tunnel"
"$TMP/e2etool" wsclient -proxy "$PROXY" -url wss://management.azure.com/ws -ca "$TMP/pki/ca.pem" -n 200 \
  || fail "websocket through the proxy"

say "reload on SIGHUP: example.org allowed (then the origin lookup fails: 502)"
sed -i 's/^allow_ranges:.*/allow_ranges: [127.0.0.77\/32]\nallow: [example.org]/' "$TMP/arcfence.yaml"
kill -HUP "$AF_PID"
wait_line "$TMP/arcfence.log" '"msg":"config reloaded"' || fail "no reload line"
code=$(curl -s --max-time 20 -o /dev/null -w '%{http_connect}' -x "$PROXY" https://example.org/ || true)
[[ "$code" == "502" ]] || fail "after reload example.org: CONNECT answered $code, want 502"
curl -sS --max-time 20 -x "$PROXY" --cacert "$TMP/pki/ca.pem" https://management.azure.com/ >/dev/null \
  || fail "allowed name after reload"

say "SIGTERM: drain and exit 0"
kill -TERM "$AF_PID"
rc=0
for _ in $(seq 1 100); do kill -0 "$AF_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$AF_PID" 2>/dev/null && fail "arcfence still running 10 s after SIGTERM"
wait "$AF_PID" || rc=$?
[[ $rc -eq 0 ]] || fail "arcfence exited $rc after SIGTERM"
grep -q '"msg":"arcfence stopped"' "$TMP/arcfence.log" || fail "no stop line"
say "PASS"
