#!/usr/bin/env bash
# Build arcfence's release artifacts for the checked-out commit:
#
#   arcfence_<V>_linux_amd64.tar.gz  arcfence_<V>_linux_arm64.tar.gz
#   arcfence_<V>_darwin_arm64.tar.gz arcfence_<V>_windows_amd64.zip
#   arcfence_<V>_<os>_<arch>.cdx.json    CycloneDX SBOM of each binary
#   arcfence_<PV>_amd64.deb  arcfence_<PV>_arm64.deb          (nfpm)
#   arcfence-<PV>-1.x86_64.rpm  arcfence-<PV>-1.aarch64.rpm
#   SHA256SUMS                           sha256sum -c SHA256SUMS checks all
#
# Usage: scripts/release.sh [OUTDIR]      (default dist/, emptied first)
#
# Reproducible: CGO_ENABLED=0, -trimpath, -buildvcs=false, and every stamp
# taken from the commit (version from `git describe`, the commit's own
# time as build date and as every file's mtime in archives and packages),
# so two runs on one commit, from any directory, give byte-identical
# artifacts (.ci/e2e-60-release.sh checks it). A dirty tree builds too, with
# "-dirty" in the version.
#
# Tools: nfpm and cyclonedx-gomod, at the versions pinned below, are
# installed once with `go install` into ARCFENCE_TOOLS (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/arcfence-ci/bin) and reused from there
# while their version matches the pin (never another copy from PATH: the
# SBOMs name the tool that wrote them).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

NFPM_VERSION=v2.48.0
CYCLONEDX_VERSION=v1.10.0
TOOLS=${ARCFENCE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/arcfence-ci/bin}
OUT=${1:-dist}
TARGETS="linux/amd64 linux/arm64 darwin/arm64 windows/amd64"

say() { echo "release: $*" >&2; }
die() { echo "release: $*" >&2; exit 1; }

# tool NAME PKG VERSION: the path of NAME at VERSION, installed into TOOLS
# when missing or at another version.
tool() {
  if [ -x "$TOOLS/$1" ] && grep -q "^[[:space:]]*mod[[:space:]].*[[:space:]]$3[[:space:]]" <<<"$(go version -m "$TOOLS/$1" 2>/dev/null)"; then
    echo "$TOOLS/$1"; return
  fi
  say "installing $2@$3 into $TOOLS"
  mkdir -p "$TOOLS"
  GOBIN=$TOOLS GOFLAGS= go install "$2@$3" >&2 || die "cannot install $2@$3"
  echo "$TOOLS/$1"
}
NFPM=$(tool nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm "$NFPM_VERSION")
CYCLONEDX=$(tool cyclonedx-gomod github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod "$CYCLONEDX_VERSION")

# --- stamps, all from the commit ---------------------------------------
COMMIT=$(git rev-parse --short=12 HEAD)
EPOCH=$(git log -1 --format=%ct HEAD)
DATE=$(TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd HEAD)
dirty=""
[ -z "$(git status --porcelain --untracked-files=no)" ] || dirty="-dirty"
if tag=$(git describe --tags --match 'v[0-9]*' --abbrev=0 HEAD 2>/dev/null); then
  n=$(git rev-list --count "$tag..HEAD")
  if [ "$n" -eq 0 ]; then VERSION=$tag; else VERSION=$tag-$n-g${COMMIT:0:7}; fi
  base=${tag#v}
  base=${base//-/\~} # v1.2.0-rc1: 1.2.0~rc1 sorts before 1.2.0 (deb and rpm)
else # no release tag yet: v0.0.0-<commits>-g<hash>, as `git describe` would say
  n=$(git rev-list --count HEAD)
  VERSION=v0.0.0-$n-g${COMMIT:0:7}
  base=0.0.0
fi
VERSION=$VERSION$dirty
# Package version: sorts after the tag it follows (deb and rpm alike).
PKG_VERSION=$base
[ "$n" -eq 0 ] || PKG_VERSION=$base+$n.g${COMMIT:0:7}
[ -z "$dirty" ] || PKG_VERSION=$PKG_VERSION.dirty
export SOURCE_DATE_EPOCH=$EPOCH
say "version $VERSION (package $PKG_VERSION), commit $COMMIT, date $DATE"

rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

LDFLAGS="-s -w -buildid= -X main.version=$VERSION -X main.commit=$COMMIT -X main.date=$DATE"

# stamp DIR: every file's and directory's mtime = the commit's time.
stamp() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }

# --- binaries, archives, SBOMs ------------------------------------------
for t in $TARGETS; do
  goos=${t%/*} goarch=${t#*/}
  name=arcfence_${VERSION}_${goos}_${goarch}
  exe=arcfence
  [ "$goos" = windows ] && exe=arcfence.exe
  say "building $name"
  mkdir -p "$WORK/$name"
  chmod 0755 "$WORK/$name" # not the umask's choice: archives must not depend on it
  CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOFLAGS= \
    go build -trimpath -buildvcs=false -ldflags="$LDFLAGS" -o "$WORK/$name/$exe" ./cmd/arcfence
  cp README.md "$WORK/$name/README.md"
  chmod 0755 "$WORK/$name/$exe"
  chmod 0644 "$WORK/$name/README.md"
  stamp "$WORK/$name"
  if [ "$goos" = windows ]; then
    # -X: no uid/gid or extra timestamps; TZ=UTC: DOS times are local times.
    (cd "$WORK" && find "$name" | LC_ALL=C sort | TZ=UTC zip -q -X -D "$OUT/$name.zip" -@)
  else
    tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner \
      --format=gnu -C "$WORK" -cf - "$name" | gzip -9 -n > "$OUT/$name.tar.gz"
  fi
  # The SBOM of exactly what was linked: read from the binary's embedded
  # module list, Go's standard library included (-std).
  "$CYCLONEDX" bin -json -disable-html-escape -licenses -std -noserial -notimestamp -version "$VERSION" \
    -output "$OUT/$name.cdx.json" "$WORK/$name/$exe" 2>"$WORK/sbom.log" \
    || { cat "$WORK/sbom.log" >&2; die "SBOM for $name"; }
done

# --- packages -------------------------------------------------------------
# The packaged unit is deploy/systemd's, with the binary in /usr/bin and
# the package's static system user (systemd then uses it instead of a
# dynamic one; the hardening is unchanged).
mkdir -p "$WORK/pkg"
sed -e 's#^ExecStart=/usr/local/bin/arcfence #ExecStart=/usr/bin/arcfence #' \
    -e 's#^DynamicUser=yes$#DynamicUser=yes\n\# Packaged: the static system user the package created is used; files it\n\# must read (TLS keys) can be given to group arcfence.\nUser=arcfence\nGroup=arcfence#' \
    deploy/systemd/arcfence.service > "$WORK/pkg/arcfence.service"
grep -q '^ExecStart=/usr/bin/arcfence serve' "$WORK/pkg/arcfence.service" || die "unit: ExecStart not rewritten"
grep -q '^User=arcfence$' "$WORK/pkg/arcfence.service" || die "unit: User= not added"
for arch in amd64 arm64; do
  say "packaging linux/$arch"
  bin=$WORK/pkg/$arch/arcfence
  mkdir -p "$(dirname "$bin")"
  tar -xzf "$OUT/arcfence_${VERSION}_linux_${arch}.tar.gz" -C "$WORK/pkg/$arch" --strip-components=1 \
    "arcfence_${VERSION}_linux_${arch}/arcfence"
  stamp "$WORK/pkg"
  # nfpm does not expand variables in every field: fill them in here.
  sed -e "s#\${ARCH}#$arch#g" -e "s#\${PKG_VERSION}#$PKG_VERSION#g" \
      -e "s#\${BIN}#$bin#g" -e "s#\${UNIT}#$WORK/pkg/arcfence.service#g" \
      packaging/nfpm.yaml > "$WORK/nfpm-$arch.yaml"
  ! grep -n '\${' "$WORK/nfpm-$arch.yaml" || die "packaging/nfpm.yaml: a variable is left unset"
  for fmt in deb rpm; do
    "$NFPM" package --config "$WORK/nfpm-$arch.yaml" --packager "$fmt" --target "$OUT/" >"$WORK/nfpm.log" 2>&1 \
      || { cat "$WORK/nfpm.log" >&2; die "nfpm $fmt $arch"; }
  done
done

# --- checksums ------------------------------------------------------------
(cd "$OUT" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
say "artifacts in $OUT:"
(cd "$OUT" && ls -l --time-style=+ | tail -n +2 | awk '{printf "  %10d  %s\n", $5, $NF}') >&2
