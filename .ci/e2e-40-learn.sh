#!/usr/bin/env bash
# End-to-end check of the tuning flow (issue 4), as an operator runs it:
#  1. `arcfence serve --learn` with a servers config and the DNS filter: curl
#     reaches a name in no catalog row and a Kubernetes catalog name, dig
#     resolves them; learn mode lets all through and logs "would deny"; a
#     guard (invalid port) stays enforced; /learned, /metrics and /readyz
#     answer on the admin listener;
#  2. `arcfence learn report --format yaml < log` prints the config lines;
#  3. they are pasted over the same keys of the config, which validates;
#  4. `arcfence serve` in enforce mode: the same traffic (curl and dig)
#     passes, a name the report never saw gets 403 not-in-allowlist and
#     NXDOMAIN.
# Loopback only, with the proxy end-to-end's scaffolding
# (proxy/internal/e2etool): a stub resolver maps the names to 127.0.0.78,
# where a TLS origin with a certificate from `arcfence certs init` listens
# on port 443 (allow_ranges lifts the private-address guard for it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

. .ci/lib.sh
e2e_init e2e-40-learn
FAIL_LOGS=("$TMP/learn.log" "$TMP/enforce.log")
need_tools curl=curl dig=dnsutils

say "building"
go build -o "$TMP/arcfence" ./cmd/arcfence
go build -o "$TMP/e2etool" ./proxy/internal/e2etool
AF="$TMP/arcfence"
"$AF" serve --help >/dev/null 2>&1 || fail "the binary has no serve command"

APP=app.arcfence.test                                # in no catalog row: needs an allow entry
K8S=eastus2.dp.kubernetesconfiguration.azure.com     # a row of the kubernetes offering
OTHER=other.arcfence.test                            # never seen in learn mode
ORIGIN_IP=127.0.0.78

"$AF" certs init "$TMP/pki" --host "$APP" --host "$K8S" --host "$OTHER" >/dev/null || fail "arcfence certs init"
"$TMP/e2etool" dns -listen 127.0.0.1:0 -a "$APP=$ORIGIN_IP" -a "$K8S=$ORIGIN_IP" -a "$OTHER=$ORIGIN_IP" \
  >"$TMP/dns.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/dns.out" '^ready ' || fail "dns stub did not start"
DNS_ADDR=$(awk '/^ready /{print $2; exit}' "$TMP/dns.out")
"$TMP/e2etool" origin -listen "$ORIGIN_IP:443" -cert "$TMP/pki/server.pem" -key "$TMP/pki/server-key.pem" \
  >"$TMP/origin.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/origin.out" '^ready ' || fail "origin did not start: $(cat "$TMP/origin.out")"

PORT=$(free_port) || fail "no free port"
APORT=$(free_port) || fail "no free port"
DPORT=$(free_port) || fail "no free port"
PROXY="http://127.0.0.1:$PORT"
ADMIN="http://127.0.0.1:$APORT"

# The config: fixed keys, then the policy keys the report rewrites, one
# line each, so that pasting the report over them is a plain replace.
cat >"$TMP/fixed.yaml" <<YAML
listen: 127.0.0.1:$PORT
resolver: $DNS_ADDR
allow_ranges: [$ORIGIN_IP/32]
admin: {listen: 127.0.0.1:$APORT}
dns: {listen: 127.0.0.1:$DPORT, upstream: [$DNS_ADDR]}
log: {level: info, fold_window: 60s}   # long: the repeats fold however slow the box; shutdown writes the summary
limits: {shutdown_grace: 5s}
YAML
cat >"$TMP/policy.yaml" <<'YAML'
offerings: [servers]
features: []
regions: [eastus2]
allow: []
YAML
cat "$TMP/fixed.yaml" "$TMP/policy.yaml" >"$TMP/arcfence.yaml"
"$AF" config validate --config "$TMP/arcfence.yaml" >/dev/null || fail "the starting config does not validate"

AF_PID=""
start_serve() { # start_serve LOG [ARGS...]: start and wait for /readyz
  local log=$1; shift
  "$AF" serve --config "$TMP/arcfence.yaml" "$@" 2>"$log" &
  AF_PID=$!
  PIDS+=("$AF_PID")
  for _ in $(seq 1 200); do
    [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$ADMIN/readyz" 2>/dev/null || true)" = 200 ] && return 0
    kill -0 "$AF_PID" 2>/dev/null || fail "arcfence serve exited at start"
    sleep 0.1
  done
  fail "arcfence serve not ready after 20 s"
}
stop_serve() {
  kill -TERM "$AF_PID"
  for _ in $(seq 1 150); do kill -0 "$AF_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$AF_PID" 2>/dev/null && fail "arcfence serve still running 15 s after SIGTERM"
  local rc=0
  wait "$AF_PID" || rc=$?
  [ "$rc" -eq 0 ] || fail "arcfence serve exited $rc after SIGTERM"
}
# pass NAME: curl https://NAME/ through the proxy reaches the origin.
pass() {
  local out
  out=$(curl -sS --max-time 20 --http1.1 -x "$PROXY" --cacert "$TMP/pki/ca.pem" "https://$1/" 2>"$TMP/curl.err") \
    || fail "$1 did not pass: $(cat "$TMP/curl.err")"
  [[ "$out" == "hello from origin $1 over HTTP/1.1" ]] || fail "$1: unexpected body: $out"
}
# resolves NAME: the DNS filter answers NAME with the origin's address.
resolves() {
  local out
  out=$(dig +short +time=5 +tries=1 -p "$DPORT" @127.0.0.1 "$1" A 2>&1) || fail "dig $1: $out"
  [[ "$out" == "$ORIGIN_IP" ]] || fail "dig $1: got '$out', want $ORIGIN_IP"
}
# refused NAME REASON: 403 with the reason header.
refused() {
  rm -f "$TMP/h"
  if curl -sS --max-time 20 -o /dev/null -D "$TMP/h" -x "$PROXY" --cacert "$TMP/pki/ca.pem" "https://$1/" 2>/dev/null; then
    fail "$1 was admitted"
  fi
  grep -q '^HTTP/1\.[01] 403' "$TMP/h" || fail "$1: no 403: $(cat "$TMP/h")"
  grep -qi "^X-Arcfence-Reason: $2" "$TMP/h" || fail "$1: no X-Arcfence-Reason: $2 in: $(cat "$TMP/h")"
}

say "1. arcfence serve --learn: what the allowlist lacks passes and is logged"
start_serve "$TMP/learn.log" --learn
for _ in 1 2 3 4 5; do pass "$APP"; done
for _ in 1 2; do pass "$K8S"; done
resolves "$K8S"
resolves "$APP"
# A guard stays on in learn mode: a CONNECT without a valid port.
resp=$(exec 3<>"/dev/tcp/127.0.0.1/$PORT"; printf 'CONNECT %s:0 HTTP/1.1\r\nHost: %s:0\r\n\r\n' "$APP" "$APP" >&3; timeout 10 head -c 12 <&3 || true)
[[ "$resp" == "HTTP/1.1 403" ]] || fail "learn mode admitted an invalid port: $resp"
wait_line "$TMP/learn.log" '"reason":"invalid-port".*"msg":"denied"' || fail "no denied line for the invalid port"
for _ in $(seq 1 100); do
  curl -s --max-time 2 "$ADMIN/learned" >"$TMP/learned.json" || true
  grep -q "\"$APP\"" "$TMP/learned.json" && grep -q "\"$K8S\"" "$TMP/learned.json" &&
    grep -q '"component": "dns"' "$TMP/learned.json" && break
  sleep 0.1
done
grep -q "\"$APP\"" "$TMP/learned.json" && grep -q "\"$K8S\"" "$TMP/learned.json" &&
  grep -q '"component": "dns"' "$TMP/learned.json" \
  || fail "/learned lacks the destinations: $(cat "$TMP/learned.json")"
grep -q '"offering_hint": "kubernetes"' "$TMP/learned.json" || fail "/learned has no kubernetes hint: $(cat "$TMP/learned.json")"
curl -s --max-time 5 "$ADMIN/metrics" >"$TMP/metrics.txt" || fail "/metrics"
grep -q '^arcfence_decisions_total{component="proxy",offering="",profile="default",reason="not-in-allowlist",verdict="deny"} 7$' "$TMP/metrics.txt" \
  || fail "/metrics: $(grep '^arcfence_decisions_total' "$TMP/metrics.txt")"
stop_serve
grep -q "\"host\":\"$K8S\".*\"offering_hint\":\"kubernetes\".*\"msg\":\"would deny\"" "$TMP/learn.log" \
  || fail "no 'would deny' line with the kubernetes hint"
grep -q "\"host\":\"$K8S\",\"qtype\":\"A\".*\"component\":\"dns\".*\"offering_hint\":\"kubernetes\".*\"msg\":\"would deny\"" "$TMP/learn.log" \
  || fail "no DNS 'would deny' line with the kubernetes hint"
grep -q "\"host\":\"$APP\".*\"summary\":true,\"count\":4,.*\"msg\":\"would deny\"" "$TMP/learn.log" \
  || fail "the 4 repeats of $APP are not folded into one summary line"
say "   $(grep -c '"msg":"would deny"' "$TMP/learn.log") 'would deny' lines (repeats folded); /learned and /metrics answered"

say "2. arcfence learn report"
"$AF" learn report --config "$TMP/arcfence.yaml" "$TMP/learn.log" | sed 's/^/   | /'
"$AF" learn report --config "$TMP/arcfence.yaml" --format yaml <"$TMP/learn.log" >"$TMP/additions.yaml" \
  || fail "learn report --format yaml"
sed 's/^/   | /' "$TMP/additions.yaml"
grep -q -- "- $APP " "$TMP/additions.yaml" || fail "the report does not allow $APP"
grep -q -- "- kubernetes " "$TMP/additions.yaml" || fail "the report does not add the kubernetes offering"

say "3. paste the lines over the policy keys"
cat "$TMP/fixed.yaml" "$TMP/additions.yaml" >"$TMP/arcfence.yaml"
"$AF" config validate --config "$TMP/arcfence.yaml" >/dev/null || fail "the pasted config does not validate"

say "4. arcfence serve (enforce): the same traffic passes"
start_serve "$TMP/enforce.log"
for _ in 1 2 3; do pass "$APP"; done
pass "$K8S"
resolves "$K8S"
resolves "$APP"
refused "$OTHER" not-in-allowlist
status=$(dig +time=5 +tries=1 -p "$DPORT" @127.0.0.1 "$OTHER" A 2>&1 | awk '/status:/{print $6; exit}')
[[ "$status" == "NXDOMAIN," ]] || fail "the DNS filter did not refuse $OTHER (status $status)"
stop_serve
grep -q '"msg":"would deny"' "$TMP/enforce.log" && fail "'would deny' lines in enforce mode"
grep -q "\"host\":\"$OTHER\".*\"msg\":\"denied\"" "$TMP/enforce.log" || fail "no denied line for $OTHER"
grep -q "\"host\":\"\\($APP\\|$K8S\\)\".*\"msg\":\"denied\"" "$TMP/enforce.log" && fail "a learned destination was refused"
say "PASS"
