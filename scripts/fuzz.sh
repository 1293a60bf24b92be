#!/usr/bin/env bash
# Runs every fuzz target of the repository (every `func FuzzXxx(f *testing.F)`
# in a *_test.go file) for a bounded time each, one after the other.
#
#   scripts/fuzz.sh                       # every target, FUZZTIME each
#   FUZZTIME=10m scripts/fuzz.sh          # longer
#   scripts/fuzz.sh ./proxy FuzzConnect   # only targets of packages / names matching
#
# Environment: FUZZTIME (default 60s, any `go test -fuzztime` value),
# FUZZ_PARALLEL (fuzzing workers per target, default 1: the machine is shared),
# FUZZ_FIGURES (a file to append "target, duration, execs, crashers" lines to).
# The test binary's -timeout is off (go test's 10m default would end a long run).
# A crasher is written by Go under the package's testdata/fuzz/<Target>/ and
# fails the run; turn it into a named table case and commit it.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

FUZZTIME=${FUZZTIME:-60s}
PARALLEL=${FUZZ_PARALLEL:-1}
pkg_filter=${1:-}
name_filter=${2:-}

mapfile -t targets < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . |
  grep -v '/testdata/' | grep -v '/vendor/' |
  sed -E 's#^\./(.*)/[^/]*_test\.go:[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*#./\1 \2#' | sort -u)

[ "${#targets[@]}" -gt 0 ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }

failed=0
summary=()
for t in "${targets[@]}"; do
  pkg=${t% *}
  name=${t#* }
  [ -n "$pkg_filter" ] && [[ "$pkg" != *"${pkg_filter#./}"* ]] && continue
  [ -n "$name_filter" ] && [[ "$name" != *"$name_filter"* ]] && continue
  echo "== $pkg $name ($FUZZTIME)"
  log=$(mktemp)
  before=$(ls "$pkg/testdata/fuzz/$name" 2>/dev/null | wc -l)
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -timeout 0 -parallel "$PARALLEL" "$pkg" 2>&1 | tee "$log" | grep -E '^(fuzz: elapsed|---|ok|FAIL|PASS)' | tail -n 3
  rc=${PIPESTATUS[0]}
  after=$(ls "$pkg/testdata/fuzz/$name" 2>/dev/null | wc -l)
  execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')
  crashers=$((after - before))
  [ "$rc" -ne 0 ] && [ "$crashers" -eq 0 ] && crashers="?(exit $rc)"
  line="$name ($pkg): ${FUZZTIME}, ${execs:-0} execs, ${crashers} crashers"
  summary+=("$line")
  if [ -n "${FUZZ_FIGURES:-}" ]; then echo "$line" >>"$FUZZ_FIGURES"; fi
  if [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))
    echo "-- $name FAILED; new inputs under $pkg/testdata/fuzz/$name/:" >&2
    grep -E '^\s+[a-z_]+_test\.go:[0-9]+:|Failing input written to' "$log" | head -n 10 >&2
  fi
  rm -f "$log"
done
echo "== summary"
printf '%s\n' "${summary[@]}"
[ "$failed" -eq 0 ]
