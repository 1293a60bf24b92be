#!/usr/bin/env bash
# End-to-end check of the release (issue 18):
#  - every target builds and passes go vet: linux/amd64, linux/arm64,
#    darwin/arm64, windows/amd64;
#  - the unit tests of policy, dnsfilter and proxy pass on linux/arm64
#    under qemu-aarch64-static (qemu-user-static), full suites;
#  - scripts/release.sh, run twice from two fresh clones of HEAD at two
#    paths, gives byte-identical artifacts (same SHA256SUMS); the artifacts
#    are all there, sha256sum -c passes, the binaries are stamped with the
#    commit's version/commit/date and are the right format per target, the
#    SBOMs are CycloneDX and list the go.mod requirements;
#  - the amd64 .deb installs with dpkg -i: `arcfence version`, the unit
#    passes systemd-analyze verify and is not enabled, the config is a
#    conffile that validates and keeps an edit over a reinstall; dpkg -r
#    keeps /etc/arcfence/arcfence.yaml, dpkg -P deletes it;
#  - deploy/Containerfile refers to archives the release made (checked
#    statically: there is no container runtime on the CI machine).
# The machine is left as found: the package is purged and the arcfence user
# deleted (when this script created them) at exit, even on failure.
# E2E_RELEASE_COLD=1 gives the second release build an empty Go build
# cache (every package recompiled; slow on 2 cores).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
export GOFLAGS=
. .ci/lib.sh
e2e_init e2e-60-release
REPO=$(pwd)
TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/arcfence-ci/bin
export ARCFENCE_TOOLS=$TOOLS

# --- leave the machine as found ----------------------------------------
USER_EXISTED=""; getent passwd arcfence >/dev/null && USER_EXISTED=1
GROUP_EXISTED=""; getent group arcfence >/dev/null && GROUP_EXISTED=1
INSTALLED_HERE=""
release_cleanup() {
  if [ -n "$INSTALLED_HERE" ] && dpkg-query -W -f='${Status}' arcfence 2>/dev/null | grep -qv not-installed; then
    dpkg_run -P arcfence >/dev/null 2>&1 || echo "$NAME: could not purge arcfence" >&2
  fi
  if [ -n "$INSTALLED_HERE" ]; then
    [ -n "$USER_EXISTED" ] || userdel arcfence >/dev/null 2>&1 || true
    [ -n "$GROUP_EXISTED" ] || groupdel arcfence >/dev/null 2>&1 || true
  fi
  e2e_cleanup
}
trap release_cleanup EXIT

# dpkg_run ARGS...: dpkg, waiting (up to 60 s) while another session holds its lock.
dpkg_run() {
  local i out rc
  for i in $(seq 1 30); do
    out=$(DEBIAN_FRONTEND=noninteractive dpkg --force-confold "$@" 2>&1); rc=$?
    if [ $rc -ne 0 ] && grep -q "lock" <<<"$out"; then sleep 2; continue; fi
    printf '%s\n' "$out"
    return $rc
  done
  printf '%s\n' "$out"
  return 1
}

need_tools qemu-aarch64-static=qemu-user-static systemd-analyze=systemd sha256sum=coreutils \
  zip=zip unzip=unzip dpkg-deb=dpkg

# --- every target builds and vets ---------------------------------------
for t in linux/amd64 linux/arm64 darwin/arm64 windows/amd64; do
  say "go vet + build for $t"
  GOOS=${t%/*} GOARCH=${t#*/} CGO_ENABLED=0 go vet ./... >"$TMP/vet.log" 2>&1 \
    || { cat "$TMP/vet.log" >&2; fail "go vet for $t"; }
  GOOS=${t%/*} GOARCH=${t#*/} CGO_ENABLED=0 go build -o /dev/null ./cmd/arcfence \
    || fail "go build for $t"
done

# --- unit tests on linux/arm64 under qemu -------------------------------
QEMU=$(command -v qemu-aarch64-static)
start=$(date +%s)
for p in policy dnsfilter proxy; do
  say "linux/arm64: $p tests under $(basename "$QEMU")"
  GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go test -c -o "$TMP/arm64-$p.test" "./$p" || fail "go test -c ./$p for arm64"
  t0=$(date +%s)
  (cd "$p" && timeout 900 "$QEMU" "$TMP/arm64-$p.test" -test.timeout=600s -test.v >"$TMP/arm64-$p.log" 2>&1) \
    || { tail -n 60 "$TMP/arm64-$p.log" >&2; fail "$p tests on linux/arm64"; }
  tail -n 1 "$TMP/arm64-$p.log" | grep -q '^ok\|^PASS$' || fail "$p tests on linux/arm64: no PASS"
  say "  PASS: $(grep -cE '^ *--- PASS' "$TMP/arm64-$p.log") tests and subtests," \
    "$(grep -cE '^ *--- SKIP' "$TMP/arm64-$p.log") skipped ($(( $(date +%s) - t0 ))s under qemu)"
done
say "arm64 tests under qemu: $(( $(date +%s) - start ))s in all (building included)"

# --- two release builds from two clones ---------------------------------
HEAD=$(git rev-parse HEAD)
clone() { # clone DIR: a fresh checkout of HEAD at DIR
  git clone -q --no-checkout "$REPO" "$1" && git -C "$1" checkout -q "$HEAD"
}
clone "$TMP/a/src" || fail "git clone"
clone "$TMP/b/elsewhere/src" || fail "git clone"
t0=$(date +%s)
(cd "$TMP/a/src" && scripts/release.sh "$TMP/a/dist") 2>"$TMP/release-a.log" \
  || { tail -n 40 "$TMP/release-a.log" >&2; fail "release build A"; }
say "release build A: $(( $(date +%s) - t0 ))s"
t0=$(date +%s)
if [ "${E2E_RELEASE_COLD:-}" = 1 ]; then
  (cd "$TMP/b/elsewhere/src" && GOCACHE=$TMP/gocache scripts/release.sh "$TMP/b/dist") 2>"$TMP/release-b.log"
else
  (cd "$TMP/b/elsewhere/src" && scripts/release.sh "$TMP/b/dist") 2>"$TMP/release-b.log"
fi || { tail -n 40 "$TMP/release-b.log" >&2; fail "release build B"; }
say "release build B: $(( $(date +%s) - t0 ))s"
DIST=$TMP/a/dist
if ! diff "$DIST/SHA256SUMS" "$TMP/b/dist/SHA256SUMS" >"$TMP/sums.diff"; then
  cat "$TMP/sums.diff" >&2
  fail "two release builds of $HEAD differ"
fi
say "reproducible: two builds of ${HEAD:0:12} are byte-identical ($(wc -l <"$DIST/SHA256SUMS") artifacts)"

# --- the artifacts ------------------------------------------------------
VERSION=$(sed -n 's/^release: version \([^ ]*\) .*/\1/p' "$TMP/release-a.log")
PKG_VERSION=$(sed -n 's/^release: version [^ ]* (package \([^)]*\)).*/\1/p' "$TMP/release-a.log")
COMMIT=$(git rev-parse --short=12 HEAD)
DATE=$(TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd HEAD)
[ -n "$VERSION" ] && [ -n "$PKG_VERSION" ] || fail "release did not say its version"
(cd "$DIST" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c SHA256SUMS"
want=(SHA256SUMS
  "arcfence_${PKG_VERSION}-1_amd64.deb" "arcfence_${PKG_VERSION}-1_arm64.deb"
  "arcfence-${PKG_VERSION}-1.x86_64.rpm" "arcfence-${PKG_VERSION}-1.aarch64.rpm")
for t in linux_amd64 linux_arm64 darwin_arm64 windows_amd64; do
  ext=tar.gz; [ "$t" = windows_amd64 ] && ext=zip
  want+=("arcfence_${VERSION}_$t.$ext" "arcfence_${VERSION}_$t.cdx.json")
done
for f in "${want[@]}"; do
  [ -s "$DIST/$f" ] || fail "artifact $f missing"
  [ "$f" = SHA256SUMS ] || grep -q "  $f\$" "$DIST/SHA256SUMS" || fail "$f not in SHA256SUMS"
done
[ "$(ls "$DIST" | wc -l)" -eq "${#want[@]}" ] || fail "unexpected files in dist: $(ls "$DIST")"

mkdir -p "$TMP/x"
for t in linux_amd64 linux_arm64 darwin_arm64; do
  tar -xzf "$DIST/arcfence_${VERSION}_$t.tar.gz" -C "$TMP/x" || fail "untar $t"
done
unzip -q "$DIST/arcfence_${VERSION}_windows_amd64.zip" -d "$TMP/x" || fail "unzip windows"
magic() { od -An -tx1 -N4 "$1" | tr -d ' \n'; }
[ "$(magic "$TMP/x/arcfence_${VERSION}_linux_amd64/arcfence")" = 7f454c46 ] || fail "linux/amd64: not ELF"
[ "$(magic "$TMP/x/arcfence_${VERSION}_darwin_arm64/arcfence")" = cffaedfe ] || fail "darwin/arm64: not Mach-O 64"
[ "$(magic "$TMP/x/arcfence_${VERSION}_windows_amd64/arcfence.exe" | cut -c1-4)" = 4d5a ] || fail "windows/amd64: not PE"
wantver="arcfence $VERSION (commit $COMMIT, date $DATE, "
got=$("$TMP/x/arcfence_${VERSION}_linux_amd64/arcfence" version) || fail "linux/amd64 version"
[[ "$got" == "$wantver"* ]] || fail "linux/amd64 version: $got; want $wantver..."
got=$("$QEMU" "$TMP/x/arcfence_${VERSION}_linux_arm64/arcfence" version) || fail "linux/arm64 version under qemu"
[[ "$got" == "$wantver"* ]] || fail "linux/arm64 version: $got; want $wantver..."
say "binaries: $got"

# SBOMs: CycloneDX JSON naming arcfence at this version and every module
# go.mod requires directly at its version (all are linked into the binary).
for t in linux_amd64 linux_arm64 darwin_arm64 windows_amd64; do
  sbom=$DIST/arcfence_${VERSION}_$t.cdx.json
  grep -q '"bomFormat": "CycloneDX"' "$sbom" || fail "$t SBOM is not CycloneDX"
  grep -q "\"purl\": \"pkg:golang/github.com/arcfence/arcfence@$VERSION" "$sbom" || fail "$t SBOM: arcfence not at $VERSION"
  purls=$(grep -o '"purl": "[^"]*"' "$sbom")
  for m in github.com/elazarl/goproxy github.com/miekg/dns github.com/rs/zerolog github.com/spf13/cobra; do
    v=$(go list -m -f '{{.Version}}' "$m") || fail "go list -m $m"
    grep -q "pkg:golang/$m@$v" <<<"$purls" || fail "$t SBOM lacks $m@$v"
  done
done

# --- the .deb on this machine -------------------------------------------
DEB=$DIST/arcfence_${PKG_VERSION}-1_amd64.deb
if dpkg-query -W -f='${Status}' arcfence 2>/dev/null | grep -q ' installed'; then
  fail "an arcfence package is already installed here; not touching it"
fi
[ ! -e /usr/bin/arcfence ] || fail "/usr/bin/arcfence exists outside the package; not touching it"
[ ! -e /etc/arcfence ] || fail "/etc/arcfence exists; not touching it"
INSTALLED_HERE=1
say "dpkg -i $(basename "$DEB")"
dpkg_run -i "$DEB" >"$TMP/dpkg.log" || { cat "$TMP/dpkg.log" >&2; fail "dpkg -i"; }
FAIL_LOGS+=("$TMP/dpkg.log")
got=$(/usr/bin/arcfence version) || fail "installed arcfence version"
[[ "$got" == "$wantver"* ]] || fail "installed version: $got"
UNIT=/usr/lib/systemd/system/arcfence.service
[ -f "$UNIT" ] || fail "no unit at $UNIT"
systemd-analyze verify "$UNIT" >"$TMP/verify.log" 2>&1 || { cat "$TMP/verify.log" >&2; fail "systemd-analyze verify $UNIT"; }
systemd-analyze security --offline=true --threshold=30 "$UNIT" >"$TMP/security.log" 2>&1 \
  || { tail -n 20 "$TMP/security.log" >&2; fail "packaged unit: exposure above 3.0"; }
grep -q '^ExecStart=/usr/bin/arcfence serve --config /etc/arcfence/arcfence.yaml' "$UNIT" || fail "unit ExecStart"
grep -q '^User=arcfence$' "$UNIT" || fail "unit User="
ls /etc/systemd/system/*.wants/arcfence.service >/dev/null 2>&1 && fail "install enabled the service"
getent passwd arcfence >/dev/null || fail "no arcfence user"
uid=$(id -u arcfence)
[ "$uid" -lt 1000 ] || fail "arcfence user uid $uid is not a system uid"
CONF=/etc/arcfence/arcfence.yaml
dpkg-query -W -f='${Conffiles}' arcfence | grep -q " $CONF " || fail "$CONF is not a conffile"
/usr/bin/arcfence config validate --config "$CONF" >/dev/null || fail "the packaged config does not validate"
echo "# edited by e2e-60-release" >>"$CONF"
dpkg_run -i "$DEB" >>"$TMP/dpkg.log" || fail "dpkg -i again (reinstall)"
grep -q "edited by e2e-60-release" "$CONF" || fail "a reinstall dropped the operator's edit of $CONF"
say "installed: version, unit verified and not enabled, conffile kept over a reinstall"

dpkg_run -r arcfence >>"$TMP/dpkg.log" || fail "dpkg -r"
[ ! -e /usr/bin/arcfence ] || fail "dpkg -r left /usr/bin/arcfence"
[ ! -e "$UNIT" ] || fail "dpkg -r left the unit"
[ -f "$CONF" ] || fail "dpkg -r deleted $CONF"
dpkg_run -P arcfence >>"$TMP/dpkg.log" || fail "dpkg -P"
[ ! -e "$CONF" ] || fail "dpkg -P left $CONF"
[ ! -e /etc/arcfence ] || fail "dpkg -P left /etc/arcfence"
say "dpkg -r kept $CONF; dpkg -P deleted it"

# --- the container recipe (static: no container runtime here) -----------
CF=deploy/Containerfile
for arch in amd64 arm64; do
  add=$(sed -n 's/^ADD \([^ ]*\) .*/\1/p' "$CF" | sed "s/\${VERSION}/$VERSION/g; s/\${TARGETARCH}/$arch/g")
  [ -f "$DIST/$add" ] || fail "$CF adds $add, which the release did not make"
  src=$(sed -n 's/^COPY --from=release \/\([^ ]*\) .*/\1/p' "$CF" | sed "s/\${VERSION}/$VERSION/g; s/\${TARGETARCH}/$arch/g")
  tar -tzf "$DIST/$add" | grep -qx "$src" || fail "$CF copies $src, which $add does not hold"
done
for l in version revision source; do
  grep -q "org.opencontainers.image.$l=" "$CF" || fail "$CF has no label org.opencontainers.image.$l"
done
say "Containerfile: unpacks the release archives for amd64 and arm64 (checked statically)"

say "artifacts:"
(cd "$DIST" && for f in *; do printf '  %10d  %s\n' "$(stat -c %s "$f")" "$f"; done)
say "ok"
