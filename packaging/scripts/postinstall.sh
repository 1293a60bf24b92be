#!/bin/sh
# arcfence postinstall: make systemd see the unit; never enable, start or
# restart it (edit /etc/arcfence/arcfence.yaml first; an upgrade leaves a
# running proxy and its tunnels alone until the operator restarts it).
# deb passes "configure" (and the old version on an upgrade); rpm passes
# 1 on install, 2 on upgrade.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
case "$1:${2:-}" in
  configure:|1:)
    echo "arcfence: edit /etc/arcfence/arcfence.yaml, check it with" \
      "'arcfence config validate --config /etc/arcfence/arcfence.yaml'," \
      "then 'systemctl enable --now arcfence'."
    ;;
  *)
    echo "arcfence: upgraded; 'systemctl try-restart arcfence' runs the new version" \
      "(tunnels are drained for limits.shutdown_grace)."
    ;;
esac
exit 0
