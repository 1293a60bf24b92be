#!/bin/sh
# arcfence postinstall: make systemd see the unit; never enable or start it
# (edit /etc/arcfence/arcfence.yaml first).
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
case "$1" in
  configure|1)
    echo "arcfence: edit /etc/arcfence/arcfence.yaml, check it with" \
      "'arcfence config validate --config /etc/arcfence/arcfence.yaml'," \
      "then 'systemctl enable --now arcfence'."
    ;;
esac
exit 0
