#!/usr/bin/env bash
# End-to-end check of the DNS filter (issue 5), queried with dig:
#  - `arcfence serve --offerings servers --region eastus2` with dns.listen on
#    a free loopback port and a loopback stub resolver as dns.upstream;
#  - x.his.arc.azure.com (a catalog name) is answered from the upstream,
#    over UDP and TCP, with the client's question;
#  - example.com gets NXDOMAIN with EDE 15 (Blocked) naming arcfence, and a
#    refusal log line with component dns; ANY is REFUSED;
#  - a large answer comes truncated over UDP and whole over TCP (dig retries);
#  - with dns.admit_learned_addresses, a CONNECT to an IP literal is refused
#    (ip-literal) until the filter hands that address out for an allowed name,
#    then admitted on the ports the policy admits that name on (an allow
#    entry for it on the loopback echo server's port) and on no other;
#  - a config reload (the file gains `mode: learn`) switches the filter to
#    learn mode: example.com is then answered and logged as "would deny";
#  - SIGTERM stops the server cleanly.
# Loopback only; every wait is bounded; everything started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
  echo "e2e-20-dns: FAIL: $*" >&2
  [ -f "$TMP/serve.log" ] && { echo "--- arcfence log:" >&2; tail -n 30 "$TMP/serve.log" >&2; }
  exit 1
}
say() { echo "e2e-20-dns: $*"; }

if ! command -v dig >/dev/null; then
  say "installing dnsutils"
  timeout 300 apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq dnsutils >"$TMP/apt.log" 2>&1 ||
    fail "apt-get install dnsutils: $(tail -n 5 "$TMP/apt.log")"
fi

say "building"
if [ -n "${ARCFENCE_BIN:-}" ]; then # a prebuilt binary, for local runs
  cp "$ARCFENCE_BIN" "$TMP/arcfence"
else
  go build -o "$TMP/arcfence" ./cmd/arcfence || fail "go build arcfence"
fi
go build -o "$TMP/e2estub" ./dnsfilter/testdata/e2estub || fail "go build e2estub"

"$TMP/e2estub" -out "$TMP/stub.env" -free 2 -maxlife 10m 2>"$TMP/stub.log" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -f "$TMP/stub.env" ] && break; sleep 0.1; done
[ -f "$TMP/stub.env" ] || fail "stub did not start: $(cat "$TMP/stub.log")"
# shellcheck disable=SC1091
. "$TMP/stub.env"
DNS_PORT=$FREE_PORT_1
PROXY_PORT=$FREE_PORT_2
say "stub upstream $STUB_ADDR, filter on 127.0.0.1:$DNS_PORT"

cat >"$TMP/arcfence.yaml" <<YAML
listen: 127.0.0.1:$PROXY_PORT
admin: {listen: ""}
allow_ranges: [127.0.0.0/8] # the echo server the learned address points at
allow: ["loop.his.arc.azure.com:$ECHO_PORT"] # the learned address is admitted as this name
YAML
args=(serve --offerings servers --region eastus2 --config "$TMP/arcfence.yaml")
if grep -q -- '--dns-listen' <<<"$("$TMP/arcfence" serve --help 2>/dev/null)"; then
  args+=(--dns-listen "127.0.0.1:$DNS_PORT" --dns-upstream "$STUB_ADDR")
  echo 'dns: {admit_learned_addresses: true}' >>"$TMP/arcfence.yaml"
else
  printf 'dns: {listen: "127.0.0.1:%s", upstream: ["%s"], admit_learned_addresses: true}\n' \
    "$DNS_PORT" "$STUB_ADDR" >>"$TMP/arcfence.yaml"
fi
"$TMP/arcfence" "${args[@]}" 2>"$TMP/serve.log" &
SERVE_PID=$!
PIDS+=($SERVE_PID)

q() { dig @127.0.0.1 -p "$DNS_PORT" +time=2 +tries=1 "$@"; }

ready=""
for _ in $(seq 1 100); do
  kill -0 "$SERVE_PID" 2>/dev/null || fail "arcfence serve exited"
  if q x.his.arc.azure.com A >"$TMP/ready.txt" 2>&1 && grep -q 'status:' "$TMP/ready.txt"; then
    ready=1
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || fail "the filter does not answer on 127.0.0.1:$DNS_PORT"

for transport in +notcp +tcp; do
  out=$(q "$transport" X.His.Arc.Azure.Com A) || fail "dig $transport allowed name"
  grep -q 'status: NOERROR' <<<"$out" || fail "allowed name $transport: $(echo "$out" | grep status)"
  grep -Eiq '^x\.his\.arc\.azure\.com\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+203\.0\.113\.10' <<<"$out" ||
    fail "allowed name $transport: answer not from the upstream:
$out"
  # The question comes back as the client spelled it (DNS 0x20).
  grep -q '^;X\.His\.Arc\.Azure\.Com\.' <<<"$out" || fail "allowed name $transport: question case lost:
$out"
  say "x.his.arc.azure.com $transport answered from the upstream"
done

out=$(q example.com A) || fail "dig example.com"
grep -q 'status: NXDOMAIN' <<<"$out" || fail "example.com: $(echo "$out" | grep status)"
grep -q 'EDE: 15 (Blocked)' <<<"$out" || fail "example.com: no EDE 15:
$out"
grep -q 'arcfence' <<<"$out" || fail "example.com: the EDE does not name arcfence"
grep -q 'ANSWER: 0' <<<"$out" || fail "example.com: has an answer"
say "example.com refused: NXDOMAIN, $(echo "$out" | grep 'EDE:' | sed 's/^; *//')"

out=$(q x.his.arc.azure.com ANY) || fail "dig ANY"
grep -q 'status: REFUSED' <<<"$out" || fail "ANY: $(echo "$out" | grep status)"
say "ANY refused"

out=$(q +noedns +ignore big.his.arc.azure.com A) || fail "dig big over UDP"
grep -Eq 'flags:[^;]* tc' <<<"$out" || fail "large answer over UDP not truncated: $(echo "$out" | grep flags)"
out=$(q +noedns big.his.arc.azure.com A) || fail "dig big with TCP retry"
grep -q 'ANSWER: 120' <<<"$out" || fail "large answer after the TCP retry: $(echo "$out" | grep flags)"
say "large answer: TC over UDP, 120 records over TCP"

# tunnel TARGET: CONNECT through the proxy; prints the status code, and for
# 200 checks that the tunnel echoes ("200-noecho" otherwise). Bounded reads.
tunnel() {
  local line status reply=""
  exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT" || { echo noconn; return; }
  printf 'CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n' "$1" "$1" >&3
  IFS= read -r -t 5 line <&3 || line=""
  status=$(echo "$line" | awk '{print $2}')
  for _ in $(seq 1 50); do
    IFS= read -r -t 5 line <&3 || break
    [ "$line" = $'\r' ] && break
  done
  if [ "$status" = 200 ]; then
    printf 'ping\n' >&3
    IFS= read -r -t 5 reply <&3 || true
    [ "$reply" = ping ] || status=200-noecho
  fi
  exec 3<&- 3>&-
  echo "$status"
}
st=$(tunnel "127.0.0.1:$ECHO_PORT")
[ "$st" = 403 ] || fail "CONNECT to an address nobody resolved: $st, want 403"
for _ in $(seq 1 50); do grep -q '"reason":"ip-literal"' "$TMP/serve.log" && break; sleep 0.1; done
grep -q '"reason":"ip-literal"' "$TMP/serve.log" || fail "no ip-literal refusal logged"
out=$(q loop.his.arc.azure.com A) || fail "dig loop.his.arc.azure.com"
grep -Eq 'IN[[:space:]]+A[[:space:]]+127\.0\.0\.1' <<<"$out" || fail "loop.his.arc.azure.com: $out"
st=$(tunnel "127.0.0.1:$ECHO_PORT")
[ "$st" = 200 ] || fail "CONNECT to the address the filter handed out: $st, want 200"
st=$(tunnel "127.0.0.1:9")
[ "$st" = 403 ] || fail "CONNECT to the handed-out address on a port its name lacks: $st, want 403"
say "learned address: 403 before the DNS answer, tunnel after, on its name's port only"

for _ in $(seq 1 50); do grep -q '"host":"example.com"' "$TMP/serve.log" && break; sleep 0.1; done
grep '"host":"example.com"' "$TMP/serve.log" | grep '"component":"dns"' | grep '"qtype":"A"' |
  grep -q '"reason":"not-in-allowlist"' || fail "no refusal log line for example.com"
say "refusal logged"

echo 'mode: learn' >>"$TMP/arcfence.yaml"
kill -HUP "$SERVE_PID" # the file watch reloads too; SIGHUP makes it certain
learned=""
for _ in $(seq 1 100); do
  out=$(q example.com A) || true
  if grep -q 'status: NOERROR' <<<"$out"; then learned=1; break; fi
  sleep 0.1
done
[ -n "$learned" ] || fail "after the reload to learn mode example.com is still refused: $(echo "$out" | grep status)"
grep -Eq 'IN[[:space:]]+A[[:space:]]+203\.0\.113\.10' <<<"$out" || fail "learn mode: example.com not answered from the upstream"
for _ in $(seq 1 50); do grep -q '"msg":"would deny"' "$TMP/serve.log" && break; sleep 0.1; done
grep -q '"msg":"would deny".*"component":"dns"\|"component":"dns".*"msg":"would deny"' "$TMP/serve.log" || fail "no would-deny line for the DNS filter"
say "reload to learn mode: example.com answered, logged as would deny"

kill -TERM "$SERVE_PID"
for _ in $(seq 1 150); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SERVE_PID" 2>/dev/null && fail "arcfence serve did not stop within 15s of SIGTERM"
rc=0
wait "$SERVE_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "arcfence serve exited $rc after SIGTERM"
say "ok"
