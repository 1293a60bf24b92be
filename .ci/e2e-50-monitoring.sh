#!/usr/bin/env bash
# End-to-end check of the operators' kit (issue 17), loopback only:
#  - the alert rules: `promtool check rules` and `promtool test rules` (a unit
#    test for every alert);
#  - the Helm chart: `helm lint`, `helm template` with the default values and
#    with every option on; the rendered ConfigMap's config passes
#    `arcfence config validate`; the PrometheusRule carries the rules file;
#  - a real Prometheus (Debian's package) on 127.0.0.1 scrapes a running
#    `arcfence serve` (proxy + DNS filter + admin listener) while curl and dig
#    drive allowed and refused traffic, a dial that fails, a DNS upstream that
#    refuses TCP and a reload; then every query of the Grafana dashboard must
#    return data through Prometheus' HTTP API (deploy/monitoring/dashcheck),
#    `promtool check metrics` passes on /metrics, Prometheus loads the rules and
#    ArcfenceNewDestinationRefused fires.
# Installs what it needs (curl, dig, prometheus from apt; helm with go install
# into a cache directory, reused). Every wait is bounded; everything started
# is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

. .ci/lib.sh
e2e_init e2e-50-monitoring
FAIL_LOGS=("$TMP/arcfence.log" "$TMP/prometheus.log")
need_tools curl=curl dig=dnsutils promtool=prometheus prometheus=prometheus
need_helm
HELM=$HELM_DIR/helm

say "alert rules: promtool check rules, promtool test rules"
promtool check rules deploy/monitoring/arcfence-rules.yaml >"$TMP/promtool.out" 2>&1 ||
  fail "promtool check rules: $(cat "$TMP/promtool.out")"
(cd deploy/monitoring && promtool test rules arcfence-rules.test.yaml) >"$TMP/promtool.out" 2>&1 ||
  fail "promtool test rules: $(cat "$TMP/promtool.out")"

say "building"
go build -o "$TMP/arcfence" ./cmd/arcfence || fail "go build arcfence"
go build -o "$TMP/e2etool" ./proxy/internal/e2etool || fail "go build e2etool"
go build -o "$TMP/e2estub" ./dnsfilter/testdata/e2estub || fail "go build e2estub"
go build -o "$TMP/dashcheck" ./deploy/monitoring/dashcheck || fail "go build dashcheck"
AF=$TMP/arcfence

say "helm chart: lint, template (defaults and every option), config validate"
CHART=deploy/helm/arcfence
ALL_ON=(-f "$CHART/ci/all-options-values.yaml")
"$HELM" lint "$CHART" >"$TMP/helm.out" 2>&1 || fail "helm lint: $(cat "$TMP/helm.out")"
"$HELM" lint "$CHART" "${ALL_ON[@]}" >"$TMP/helm.out" 2>&1 || fail "helm lint (every option): $(cat "$TMP/helm.out")"
"$HELM" template arcfence "$CHART" --namespace arcfence >"$TMP/default.yaml" 2>"$TMP/helm.out" ||
  fail "helm template: $(cat "$TMP/helm.out")"
"$HELM" template arcfence "$CHART" --namespace arcfence "${ALL_ON[@]}" >"$TMP/all.yaml" 2>"$TMP/helm.out" ||
  fail "helm template (every option): $(cat "$TMP/helm.out")"
for kind in ConfigMap Deployment Service PodDisruptionBudget; do
  grep -q "^kind: $kind$" "$TMP/default.yaml" || fail "default render has no $kind"
done
for kind in NetworkPolicy ServiceMonitor PrometheusRule; do
  grep -q "^kind: $kind$" "$TMP/default.yaml" && fail "default render has a $kind (off by default)"
  grep -q "^kind: $kind$" "$TMP/all.yaml" || fail "every-option render has no $kind"
done
# The rendered configs through `arcfence config validate`, the PrometheusRule
# and dashboard against their files, the chart against deploy/kubernetes:
# the deploy package's helm tests, run here with helm present.
ARCFENCE_HELM="$HELM" ARCFENCE_BIN="$AF" go test -count=1 -v -run 'TestHelm' ./deploy/ >"$TMP/gotest.out" 2>&1 ||
  fail "deploy helm tests: $(tail -n 30 "$TMP/gotest.out")"
grep -q -- '--- SKIP' "$TMP/gotest.out" && fail "deploy helm tests skipped: $(grep -A2 -- '--- SKIP' "$TMP/gotest.out")"
say "$(grep -c -- '^--- PASS' "$TMP/gotest.out") helm tests passed"

say "starting the loopback world"
"$AF" certs init "$TMP/pki" --host management.azure.com --host gbl.his.arc.azure.com >/dev/null ||
  fail "arcfence certs init"
"$TMP/e2etool" dns -listen 127.0.0.1:0 \
  -a management.azure.com=127.0.0.81 -a gbl.his.arc.azure.com=127.0.0.81 >"$TMP/resolver.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/resolver.out" '^ready ' || fail "resolver stub did not start"
RESOLVER=$(awk '/^ready /{print $2; exit}' "$TMP/resolver.out")
"$TMP/e2etool" origin -listen 127.0.0.81:443 -cert "$TMP/pki/server.pem" -key "$TMP/pki/server-key.pem" \
  >"$TMP/origin.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/origin.out" '^ready ' || fail "origin did not start: $(cat "$TMP/origin.out")"
"$TMP/e2estub" -out "$TMP/stub.env" -free 5 -maxlife 10m 2>"$TMP/stub.log" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -f "$TMP/stub.env" ] && break; sleep 0.1; done
[ -f "$TMP/stub.env" ] || fail "DNS stub did not start: $(cat "$TMP/stub.log")"
# shellcheck disable=SC1091
. "$TMP/stub.env"
PROXY_PORT=$FREE_PORT_1 ADMIN_PORT=$FREE_PORT_2 DNS_PORT=$FREE_PORT_3 PROM_PORT=$FREE_PORT_4
DEAD_PORT=$FREE_PORT_5 # nothing listens: dials there are refused, over TCP and UDP
PROXY=http://127.0.0.1:$PROXY_PORT
ADMIN=http://127.0.0.1:$ADMIN_PORT
PROM=http://127.0.0.1:$PROM_PORT

# The first DNS upstream refuses TCP (nothing listens), the second is the stub.
cat >"$TMP/arcfence.yaml" <<YAML
listen: 127.0.0.1:$PROXY_PORT
regions: [eastus2]
offerings: [servers]
resolver: $RESOLVER
allow: ["127.0.0.1:$DEAD_PORT"]
allow_ranges: [127.0.0.81/32, 127.0.0.1/32]
dns: {listen: "127.0.0.1:$DNS_PORT", upstream: ["127.0.0.1:$DEAD_PORT", "$STUB_ADDR"]}
admin: {listen: "127.0.0.1:$ADMIN_PORT"}
log: {level: info}
limits: {shutdown_grace: 5s}
YAML
"$AF" serve --config "$TMP/arcfence.yaml" 2>"$TMP/arcfence.log" &
AF_PID=$!
PIDS+=($AF_PID)
wait_port 127.0.0.1 "$ADMIN_PORT" || fail "arcfence admin listener did not come up"
wait_port 127.0.0.1 "$PROXY_PORT" || fail "arcfence proxy did not come up"

cat >"$TMP/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$PWD/deploy/monitoring/arcfence-rules.yaml"]
scrape_configs:
  - job_name: arcfence
    static_configs: [{targets: ["127.0.0.1:$ADMIN_PORT"]}]
YAML
promtool check config "$TMP/prometheus.yml" >"$TMP/promtool.out" 2>&1 || fail "promtool check config: $(cat "$TMP/promtool.out")"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
ready=""
for _ in $(seq 1 300); do
  curl -sf --max-time 2 "$PROM/-/ready" >/dev/null 2>&1 && { ready=1; break; }
  sleep 0.1
done
[ -n "$ready" ] || fail "prometheus did not become ready on 127.0.0.1:$PROM_PORT"
say "prometheus on 127.0.0.1:$PROM_PORT scrapes arcfence's admin listener 127.0.0.1:$ADMIN_PORT"

# promql EXPR: the number of series Prometheus returns for EXPR now.
promql() {
  curl -sf --max-time 5 "$PROM/api/v1/query" --data-urlencode "query=$1" |
    grep -o '"result":\[.*\]' | grep -o '"metric"' | wc -l
}
# wait_series EXPR: wait (up to 30 s) until EXPR returns a series.
wait_series() {
  for _ in $(seq 1 150); do
    [ "$(promql "$1")" -gt 0 ] 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

q() { dig @127.0.0.1 -p "$DNS_PORT" +time=3 +tries=1 "$@"; }

# traffic REFUSED: one round of allowed and refused requests through the proxy
# and the filter; REFUSED is the name refused by both.
traffic() {
  local refused=$1
  out=$(curl -sS --max-time 20 -x "$PROXY" --cacert "$TMP/pki/ca.pem" https://management.azure.com/) ||
    fail "curl to an allowed name"
  [[ "$out" == "hello from origin management.azure.com over HTTP/2.0" ]] || fail "unexpected body: $out"
  code=$(curl -s --max-time 20 -o /dev/null -w '%{http_connect}' -x "$PROXY" "https://$refused/" || true)
  [[ "$code" == 403 ]] || fail "$refused: CONNECT answered $code, want 403"
  code=$(curl -s --max-time 20 -o /dev/null -w '%{http_connect}' -x "$PROXY" "https://127.0.0.1:$DEAD_PORT/" || true)
  [[ "$code" == 502 ]] || fail "CONNECT to a port nobody listens on: $code, want 502"
  out=$(q +tcp x.his.arc.azure.com A) || fail "dig +tcp allowed name"
  grep -q 'status: NOERROR' <<<"$out" || fail "allowed name over TCP: $(grep status <<<"$out")"
  out=$(q x.his.arc.azure.com A) || fail "dig allowed name"
  grep -q 'status: NOERROR' <<<"$out" || fail "allowed name over UDP: $(grep status <<<"$out")"
  out=$(q "$refused" A) || fail "dig $refused"
  grep -q 'status: NXDOMAIN' <<<"$out" || fail "$refused: $(grep status <<<"$out")"
}

say "traffic, round 1"
traffic example.org
wait_series 'arcfence_decisions_total{job="arcfence"}' || fail "prometheus has no arcfence_decisions_total"

say "the DNS upstream that refuses TCP is a warn line with its cause, and a metric"
wait_line "$TMP/arcfence.log" '"msg":"dns upstream failed"' || fail "no dns upstream failed line"
grep '"msg":"dns upstream failed"' "$TMP/arcfence.log" | head -n 1 | grep '"level":"warn"' |
  grep "\"upstream\":\"127.0.0.1:$DEAD_PORT\"" | grep '"proto":"tcp"' | grep -q '"cause":"connection refused"' ||
  fail "upstream failure line: $(grep '"msg":"dns upstream failed"' "$TMP/arcfence.log" | head -n 1)"
curl -sf --max-time 5 "$ADMIN/metrics" >"$TMP/metrics.txt" || fail "GET /metrics"
grep -q "^arcfence_dns_upstream_errors_total{proto=\"tcp\",upstream=\"127.0.0.1:$DEAD_PORT\"} [1-9]" "$TMP/metrics.txt" ||
  fail "no upstream error count: $(grep upstream_errors "$TMP/metrics.txt")"

say "promtool check metrics on /metrics"
promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.out" 2>&1 ||
  fail "promtool check metrics: $(cat "$TMP/promtool.out")"

say "reload (deny a name) and traffic, round 2"
sed -i 's/^allow: \(.*\)$/allow: \1\ndeny: [blocked.example.net]/' "$TMP/arcfence.yaml"
kill -HUP "$AF_PID"
wait_line "$TMP/arcfence.log" '"msg":"config reloaded"' || fail "no reload line"
traffic example.net # a destination not refused before: the new-destination alert
wait_series 'arcfence_config_reloads_total{job="arcfence",result="ok"}' || fail "prometheus has no reload count"

say "every dashboard query returns data"
"$TMP/dashcheck" -dashboard deploy/monitoring/grafana-dashboard.json -prometheus "$PROM" \
  -rate-interval 1m -range 10m -timeout 90s >"$TMP/dashcheck.out" 2>&1 ||
  fail "dashcheck: $(cat "$TMP/dashcheck.out")"
tail -n 1 "$TMP/dashcheck.out" | sed "s/^/$NAME: /"

say "prometheus loaded the rules; ArcfenceNewDestinationRefused fires"
n=$(curl -sf --max-time 5 "$PROM/api/v1/rules?type=alert" | grep -o '"type":"alerting"' | wc -l)
[ "$n" -eq 7 ] || fail "prometheus loaded $n alerting rules, want 7"
firing=""
for _ in $(seq 1 150); do
  curl -sf --max-time 5 "$PROM/api/v1/alerts" | grep -q '"alertname":"ArcfenceNewDestinationRefused".*"state":"firing"' &&
    { firing=1; break; }
  sleep 0.2
done
[ -n "$firing" ] || fail "ArcfenceNewDestinationRefused not firing: $(curl -sf --max-time 5 "$PROM/api/v1/alerts")"
alerts=$(curl -sf --max-time 5 "$PROM/api/v1/alerts") || fail "prometheus alerts API did not answer"
! grep -q '"alertname":"ArcfenceDown"' <<<"$alerts" || fail "ArcfenceDown is pending or firing for a running arcfence"

say "SIGTERM: arcfence drains and exits 0"
stop_clean "$AF_PID"
say "PASS"
