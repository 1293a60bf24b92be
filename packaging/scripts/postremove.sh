#!/bin/sh
# arcfence postremove: reload systemd after removal; on a deb purge also
# delete the state directory and the system user (dpkg deletes the
# conffile /etc/arcfence/arcfence.yaml itself). rpm has no purge: its
# erase ($1 = 0) keeps the user, as rpm packages do.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
  rm -rf /var/lib/private/arcfence /var/lib/arcfence
  rmdir /etc/arcfence 2>/dev/null || true
  if getent passwd arcfence >/dev/null 2>&1; then
    userdel arcfence >/dev/null 2>&1 || true
  fi
  if getent group arcfence >/dev/null 2>&1; then
    groupdel arcfence >/dev/null 2>&1 || true
  fi
fi
exit 0
