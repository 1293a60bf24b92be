#!/usr/bin/env bash
# End-to-end check of the operator tools (issue 6):
#  - every `arcfence catalog --format` produces non-empty, well-formed output;
#  - `agent-config` prints the agent commands;
#  - the Squid fragment is accepted by `squid -k parse` (squid installed with
#    apt when missing), and a real Squid running it on loopback answers like
#    arcfence's pattern semantics: "*.x" admits a.x but not the apex x,
#    azgn* globs, ports, the pkiops path, deny everything else.
# Loopback only: Squid's DNS points at 127.0.0.1, where lookups fail, so an
# admitted CONNECT ends in a DNS error (503), a refused one in 403.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

TMP=$(mktemp -d)
SQUID_PID=""
SERVE_PID=""
ORIGIN_PID=""
CREATED_POLICY_RC=""
cleanup() {
  for p in $SERVE_PID $ORIGIN_PID; do kill "$p" 2>/dev/null || true; done
  if [ -n "$SQUID_PID" ] && kill -0 "$SQUID_PID" 2>/dev/null; then
    kill "$SQUID_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SQUID_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SQUID_PID" 2>/dev/null || true
  fi
  if [ -n "$CREATED_POLICY_RC" ]; then rm -f /usr/sbin/policy-rc.d; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "e2e-30-tools: FAIL: $*" >&2; exit 1; }
say() { echo "e2e-30-tools: $*"; }

apt_install() { # apt_install PKG...: install with services kept from starting
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    CREATED_POLICY_RC=1
  fi
  timeout 180 apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq "$@" >"$TMP/apt.log" 2>&1
  local rc=$?
  if [ -n "$CREATED_POLICY_RC" ]; then rm -f /usr/sbin/policy-rc.d; CREATED_POLICY_RC=""; fi
  return $rc
}

say "building"
go build -o "$TMP/arcfence" ./cmd/arcfence
AF="$TMP/arcfence"

cat > "$TMP/arcfence.yaml" <<'YAML'
listen: 127.0.0.1:3128
regions: [eastus2]
offerings: [servers, kubernetes, esu, resource-bridge]
features: [cluster-connect, legacy-image-download, ssh]
allow: ["10.20.30.40:8443"]
deny: [pas.windows.net]
catalog: {revision: "2024-01"}
YAML

say "catalog formats"
for f in table json hosts squid azure-firewall pac; do
  "$AF" catalog --config "$TMP/arcfence.yaml" --format "$f" > "$TMP/out.$f" || fail "catalog --format $f"
  [ -s "$TMP/out.$f" ] || fail "catalog --format $f is empty"
  "$AF" catalog --all --format "$f" > "$TMP/all.$f" || fail "catalog --all --format $f"
  [ -s "$TMP/all.$f" ] || fail "catalog --all --format $f is empty"
  say "  $f: $(wc -l < "$TMP/out.$f") lines (--all: $(wc -l < "$TMP/all.$f"))"
done
grep -qx 'eastus2.obo.arc.azure.com' "$TMP/out.hosts" || fail "hosts: regions not filled in"
if command -v python3 >/dev/null; then
  for f in json azure-firewall; do
    python3 -m json.tool "$TMP/out.$f" >/dev/null || fail "$f output is not JSON"
  done
fi
if command -v node >/dev/null; then
  printf '\nif (FindProxyForURL("https://eastus2.his.arc.azure.com/", "eastus2.his.arc.azure.com") !== "PROXY 127.0.0.1:3128" ||\n    FindProxyForURL("https://example.org/", "example.org") !== "DIRECT") { process.exit(1); }\n' \
    | cat "$TMP/out.pac" - > "$TMP/pac.js"
  node "$TMP/pac.js" || fail "the PAC file answers wrongly"
fi

say "agent-config"
"$AF" agent-config --config "$TMP/arcfence.yaml" --proxy-url http://arcfence.corp.example:3128 > "$TMP/agent.txt"
grep -q 'azcmagent config set proxy.url "http://arcfence.corp.example:3128"' "$TMP/agent.txt" || fail "agent-config: no azcmagent line"
grep -q -- '--proxy-skip-range' "$TMP/agent.txt" || fail "agent-config: no connectedk8s line"

free_port() { # a loopback port nothing listens on, from $1 upwards
  local p
  for p in $(seq "$1" $(( $1 + 200 ))); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}
wait_port() { # wait_port PORT PID: until something listens, bounded
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# arcfence check through a running arcfence: an allow entry leads to a loopback
# TLS origin (openssl s_server); catalog names go to a resolver on a closed
# loopback port, so they fail to resolve (502) and nothing leaves the machine.
if "$AF" serve --help >/dev/null 2>&1 && command -v openssl >/dev/null; then
  say "check through a running arcfence"
  OPORT=$(free_port 24443) || fail "no free port"
  PPORT=$(free_port 25128) || fail "no free port"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$TMP/origin.key" -out "$TMP/origin.pem" >/dev/null 2>&1 || fail "openssl req"
  openssl s_server -accept "127.0.0.1:$OPORT" -cert "$TMP/origin.pem" -key "$TMP/origin.key" -quiet -naccept 100 \
    </dev/null >"$TMP/s_server.log" 2>&1 &
  ORIGIN_PID=$!
  cat > "$TMP/serve.yaml" <<YAML
listen: 127.0.0.1:$PPORT
regions: [eastus2]
offerings: [esu]
allow: ["127.0.0.1:$OPORT"]
allow_ranges: [127.0.0.0/8]
resolver: 127.0.0.1:1
admin: {listen: ""}
YAML
  "$AF" serve --config "$TMP/serve.yaml" >"$TMP/serve.log" 2>&1 &
  SERVE_PID=$!
  wait_port "$OPORT" "$ORIGIN_PID" || { cat "$TMP/s_server.log"; fail "openssl s_server did not start"; }
  wait_port "$PPORT" "$SERVE_PID" || { tail -20 "$TMP/serve.log"; fail "arcfence serve did not start"; }
  set +e
  "$AF" check --config "$TMP/serve.yaml" --proxy --ca-file "$TMP/origin.pem" --timeout 10s --json > "$TMP/check.json"
  rc=$?
  "$AF" check --config "$TMP/serve.yaml" --proxy --ca-file "$TMP/origin.pem" --timeout 10s > "$TMP/check.txt"
  set -e
  kill "$SERVE_PID" "$ORIGIN_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVE_PID" "$ORIGIN_PID" 2>/dev/null || true
  cat "$TMP/check.txt"
  [ "$rc" = 1 ] || fail "check exit code $rc; want 1 (the catalog names cannot resolve here)"
  grep -q "\"endpoint\":\"127.0.0.1:$OPORT\".*\"reachable\":true,\"tls_ok\":true" "$TMP/check.json" \
    || fail "check: the allowed loopback origin is not reachable with verified TLS through arcfence"
  grep -q '"endpoint":"management.azure.com:443".*"reachable":false.*proxy answered 502' "$TMP/check.json" \
    || fail "check: management.azure.com should fail with the proxy's 502 (no resolver)"
else
  say "arcfence serve or openssl not available: skipping the check-through-arcfence part"
fi

if ! command -v squid >/dev/null; then
  say "installing squid"
  if ! apt_install squid; then
    tail -5 "$TMP/apt.log" || true
    say "squid is not installable here: skipping the Squid checks"
    exit 0
  fi
fi
command -v squid >/dev/null || { say "no squid binary after install: skipping the Squid checks"; exit 0; }

SQ="$TMP/squid"
mkdir -p "$SQ"
chmod 711 "$TMP"   # Squid drops to its own user (proxy), which must reach $SQ
chmod 1777 "$SQ"
cp "$TMP/out.squid" "$SQ/arcfence.conf"
cp "$TMP/all.squid" "$SQ/arcfence-all.conf"
PORT=$(free_port 23128) || fail "no free port"
mkconf() { # mkconf FRAGMENT
  cat <<EOF
http_port 127.0.0.1:$PORT
visible_hostname arcfence-e2e
pid_filename $SQ/squid.pid
cache_log $SQ/cache.log
access_log stdio:$SQ/access.log
coredump_dir $SQ
cache deny all
pinger_enable off
shutdown_lifetime 1 seconds
dns_nameservers 127.0.0.1
dns_timeout 3 seconds
hosts_file none
include $1
EOF
}
mkconf "$SQ/arcfence.conf" > "$SQ/squid.conf"
mkconf "$SQ/arcfence-all.conf" > "$SQ/squid-all.conf"

say "squid -k parse"
for c in squid.conf squid-all.conf; do
  if ! timeout 60 squid -k parse -f "$SQ/$c" > "$SQ/parse-$c.log" 2>&1; then
    cat "$SQ/parse-$c.log"; fail "squid -k parse rejects the fragment ($c)"
  fi
  if grep -E 'ERROR|FATAL' "$SQ/parse-$c.log"; then fail "squid -k parse reports errors ($c)"; fi
  grep -E 'WARNING' "$SQ/parse-$c.log" || true
done

if ! command -v curl >/dev/null; then
  apt_install curl || { say "curl not installable: skipping the live Squid checks"; exit 0; }
fi

say "starting squid on 127.0.0.1:$PORT"
rm -f "$SQ/cache.log" "$SQ/access.log"   # the parse runs may have left them owned by root
squid -N -f "$SQ/squid.conf" > "$SQ/run.log" 2>&1 &
SQUID_PID=$!
wait_port "$PORT" "$SQUID_PID" || { cat "$SQ/run.log" "$SQ/cache.log" 2>/dev/null | tail -30; fail "squid did not start"; }

# code SRC URL: the proxy's answer to the CONNECT (https) or the request (http),
# sent from the loopback address SRC ("" = the default source)
code() {
  local src=$1 url=$2 fmt='%{http_code}' iface=()
  [ -n "$src" ] && iface=(--interface "$src")
  case "$url" in https://*) fmt='%{http_connect}' ;; esac
  curl -s -o /dev/null --max-time 20 "${iface[@]}" -x "http://127.0.0.1:$PORT" -w "$fmt" "$url" || true
}
verdict() { # verdict CONFIG SRC allow|deny URL: Squid's answer to SRC against the expectation and arcfence explain (--client SRC)
  local cfg=$1 src=$2 got want dest client=()
  [ -n "$src" ] && client=(--client "$src")
  got=$(code "$src" "$4")
  case "$4" in
    https://*) dest=${4#https://}; dest=${dest%%/*}; case "$dest" in *:*) ;; *) dest="$dest:443" ;; esac ;;
    *)         dest=$4 ;;
  esac
  want=$("$AF" explain --config "$cfg" "${client[@]}" "$dest" | sed -n 's/.*"verdict":"\([a-z]*\)".*/\1/p')
  [ "$want" = "$3" ] || fail "arcfence explain ${client[*]} $dest says $want; the test expects $3"
  case "$3" in
    deny)  [ "$got" = "403" ] || fail "squid: $4 ${src:+from $src }answered $got; arcfence denies it (want 403)" ;;
    allow) [ "$got" != "403" ] && [ "$got" != "000" ] || fail "squid: $4 ${src:+from $src }answered $got; arcfence admits it (want a DNS failure, not 403)" ;;
  esac
  say "  ${src:+$src }$3 $4 (squid $got, arcfence $want)"
}
expect() { verdict "$TMP/arcfence.yaml" "" "$@"; }
say "live squid checks, each compared with arcfence explain"
expect allow https://eastus2.his.arc.azure.com/
expect allow https://a.b.his.arc.azure.com/
expect deny  https://his.arc.azure.com/
expect deny  https://badhis.arc.azure.com/
expect allow https://azgnabc.servicebus.windows.net/
expect allow https://x.y.servicebus.windows.net/
expect deny  https://servicebus.windows.net/
expect allow https://management.azure.com/
expect deny  https://management.azure.com:8443/
expect deny  http://management.azure.com/
expect allow https://eastus2.obo.arc.azure.com:8084/
expect deny  https://westus.obo.arc.azure.com:8084/
expect deny  https://eastus2.obo.arc.azure.com/
expect allow http://microsoft.com/pkiops/certs/x.crt
expect allow http://microsoft.com/pkiops/certs
expect deny  http://microsoft.com/pkiopsx
expect deny  http://microsoft.com/
expect allow http://msk8s.b.tlu.dl.delivery.mp.microsoft.com/
expect deny  https://evil.example.com/
if grep -q 'arcfence_deny' "$SQ/arcfence.conf"; then
  expect deny https://pas.windows.net/
else
  say "  (catalog does not hand the deny entries to the export: pas.windows.net not checked)"
fi

# Profiles (issue 15): the fragment rendered for every profile, each bound to
# its clients, parses, and a live Squid answers each source address as
# arcfence explain --client does.
cat > "$TMP/profiles.yaml" <<'YAML'
listen: 127.0.0.1:3128
regions: [eastus2]
clients: [127.0.0.0/8]
offerings: [servers]
deny: [pas.windows.net]
catalog: {revision: "2024-01"}
profiles:
  - name: cluster
    clients: [127.0.0.2]
    offerings: [kubernetes]
    features: [cluster-connect]
YAML
"$AF" catalog --config "$TMP/profiles.yaml" --format squid > "$SQ/profiles.conf" || fail "catalog --format squid with profiles"
grep -q '^acl arcfence_cluster_src src 127.0.0.2/32$' "$SQ/profiles.conf" || fail "squid: no src ACL for profile cluster"
"$AF" catalog --config "$TMP/profiles.yaml" --format azure-firewall > "$TMP/profiles.afw" || fail "catalog --format azure-firewall with profiles"
grep -q '"127.0.0.2/32"' "$TMP/profiles.afw" || fail "azure-firewall: no sourceAddresses for profile cluster"
mkconf "$SQ/profiles.conf" > "$SQ/squid-profiles.conf"
say "squid -k parse (profiles)"
if ! timeout 60 squid -k parse -f "$SQ/squid-profiles.conf" > "$SQ/parse-profiles.log" 2>&1; then
  cat "$SQ/parse-profiles.log"; fail "squid -k parse rejects the profiles fragment"
fi
if grep -E 'ERROR|FATAL' "$SQ/parse-profiles.log"; then fail "squid -k parse reports errors (profiles)"; fi

say "restarting squid with the profiles fragment"
kill "$SQUID_PID" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$SQUID_PID" 2>/dev/null || break; sleep 0.1; done
kill -9 "$SQUID_PID" 2>/dev/null || true
rm -f "$SQ/cache.log" "$SQ/access.log" "$SQ/squid.pid"
squid -N -f "$SQ/squid-profiles.conf" > "$SQ/run-profiles.log" 2>&1 &
SQUID_PID=$!
wait_port "$PORT" "$SQUID_PID" || { cat "$SQ/run-profiles.log" "$SQ/cache.log" 2>/dev/null | tail -30; fail "squid did not start (profiles)"; }
expect_from() { verdict "$TMP/profiles.yaml" "$@"; } # expect_from SRC allow|deny URL
expect_from 127.0.0.1 allow https://x.guestconfiguration.azure.com/
expect_from 127.0.0.2 deny  https://x.guestconfiguration.azure.com/
expect_from 127.0.0.2 allow https://eastus2.his.arc.azure.com/
expect_from 127.0.0.2 allow https://eastus2.dp.kubernetesconfiguration.azure.com/
expect_from 127.0.0.1 deny  https://eastus2.dp.kubernetesconfiguration.azure.com/
expect_from 127.0.0.1 deny  https://pas.windows.net/
expect_from 127.0.0.2 allow https://management.azure.com/
expect_from 127.0.0.2 deny  https://evil.example.com/
say "ok"
