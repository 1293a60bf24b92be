#!/usr/bin/env bash
# Growth measurement used for the README (issue 7). Paths are the author's bench dirs: B holds
# proxybench (../shared/peer-bench build.sh), D the arcfence binary and arcfence-grow.yaml
# (the harness config plus limits.max_tunnels_per_client: 10000). Usage: CFG=arcfence-grow.yaml ./grow.sh BIN 100 1000 5000
# grow.sh bin N... : for each N, hold N idle tunnels (proxybench idle) and meanwhile run connrate (n=5000, c=32)
set -u
B=/work/bench-work/bin; PB=$B/proxybench; D=/work/bench-work/dev
b=$1; shift
ulimit -n $(ulimit -Hn)
$PB sink -addr 127.0.0.1:9443 -maxlife 1h >/dev/null 2>&1 & SINK=$!
$PB waitport -addr 127.0.0.1:9443 -timeout 10s
for N in "$@"; do
  $D/$b serve --config $D/${CFG:-arcfence.yaml} >$D/$b.log 2>&1 & P=$!
  $PB waitport -addr 127.0.0.1:3130 -timeout 10s; sleep 0.3
  rm -f $D/idle.err
  timeout 200 $PB idle -proxy 127.0.0.1:3130 -target 127.0.0.1:9443 -n $N -hold 25 -pid $P -label idle-$N >$D/idle-$N.json 2>$D/idle.err & I=$!
  for i in $(seq 600); do grep -q READY $D/idle.err 2>/dev/null && break; sleep 0.1; done
  cr=$(timeout 100 $PB connrate -proxy 127.0.0.1:3130 -target 127.0.0.1:9443 -n 5000 -c 32 -pid $P -label cr-with-$N -timeout 20s 2>/dev/null)
  wait $I
  echo "N=$N idle: $(cat $D/idle-$N.json | cut -c1-600)"
  echo "N=$N connrate: $cr"
  kill $P; wait $P 2>/dev/null; sleep 0.5
done
kill $SINK; wait $SINK 2>/dev/null
