# Shared scaffolding of the end-to-end scripts (sourced, not run):
#   e2e_init NAME      TMP work dir, PIDS (killed and waited for at exit), say/fail
#   FAIL_LOGS=(files)  tails printed by fail
#   need_tools CMD=PKG...  apt-get install the packages of missing commands
#   wait_line FILE PATTERN, wait_port HOST PORT (20 s each), free_port
#   stop_clean PID     SIGTERM, wait (15 s) and require exit status 0
# Everything it starts or waits for is bounded.

e2e_init() {
  NAME=$1
  TMP=$(mktemp -d)
  PIDS=()
  FAIL_LOGS=()
  trap e2e_cleanup EXIT
}

e2e_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
}

say() { echo "$NAME: $*"; }

fail() {
  echo "$NAME: FAIL: $*" >&2
  for f in "${FAIL_LOGS[@]}"; do
    [ -f "$f" ] && { echo "--- $f (tail)" >&2; tail -n 40 "$f" >&2; }
  done
  exit 1
}

# need_tools curl=curl dig=dnsutils: install what is missing (a fresh machine has neither).
need_tools() {
  local pkgs=() t
  for t in "$@"; do command -v "${t%%=*}" >/dev/null || pkgs+=("${t#*=}"); done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  say "installing ${pkgs[*]}"
  timeout 300 apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1 \
    || fail "cannot install ${pkgs[*]}"
}

# wait_line FILE PATTERN: wait (up to 20 s) for PATTERN in FILE.
wait_line() {
  for _ in $(seq 1 200); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# wait_port HOST PORT: wait (up to 20 s) until a TCP connect succeeds.
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# free_port: an unused loopback port (below Linux's ephemeral range).
free_port() {
  for _ in $(seq 1 50); do
    local p=$((12000 + RANDOM % 16000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

# Helm, for the chart checks: built with `go install` into a cache directory
# outside the repository and reused (the distribution has no helm package).
# .ci/run starts the build in the background early (helm_prefetch); need_helm
# waits for it (one build at a time, under a lock) or builds it itself.
HELM_VERSION=v4.3.2
HELM_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/arcfence-ci/bin

# helm_ok: the cached helm is there and built from $HELM_VERSION (a go-installed
# helm reports only major.minor itself; its build info has the module version).
helm_ok() {
  [ -x "$HELM_DIR/helm" ] &&
    [ "$(go version -m "$HELM_DIR/helm" 2>/dev/null | awk '$1 == "mod" && $2 == "helm.sh/helm/v4" {print $3}')" = "$HELM_VERSION" ]
}

# helm_build: go install helm under the lock, unless it is already there.
helm_build() {
  mkdir -p "$HELM_DIR"
  flock "$HELM_DIR/.helm.lock" bash -c '
    . .ci/lib.sh
    helm_ok || GOBIN="$HELM_DIR" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"'
}

helm_prefetch() { helm_ok || (timeout 1800 bash -c '. .ci/lib.sh; helm_build' >/dev/null 2>&1 &); }

need_helm() {
  helm_ok && return 0
  say "installing helm $HELM_VERSION into $HELM_DIR (go install; minutes on a cold cache)"
  timeout 1200 bash -c '. .ci/lib.sh; helm_build' >"$TMP/helm-install.log" 2>&1 ||
    fail "go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION: $(tail -n 5 "$TMP/helm-install.log")"
  helm_ok || fail "helm $HELM_VERSION not in $HELM_DIR after go install"
}

# stop_clean PID: SIGTERM the process, wait up to 15 s, fail unless it exited 0.
stop_clean() {
  local rc=0
  kill -TERM "$1"
  for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$1" 2>/dev/null && fail "process $1 still running 15 s after SIGTERM"
  wait "$1" || rc=$?
  [ "$rc" -eq 0 ] || fail "process $1 exited $rc after SIGTERM"
}
