#!/bin/sh
# arcfence postremove: reload systemd after removal; on a deb purge also
# delete the state directory (dpkg deletes the conffile
# /etc/arcfence/arcfence.yaml itself). The system user is kept, as Debian
# and rpm packages do, so files it owns never pass to a reused uid.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
  rm -rf /var/lib/private/arcfence /var/lib/arcfence
  rmdir /etc/arcfence 2>/dev/null || true
fi
exit 0
