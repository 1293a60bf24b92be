#!/bin/sh
# arcfence preinstall: create the system user the packaged unit runs as
# (User=arcfence), so files such as TLS keys can be given to its group.
set -e
if ! getent passwd arcfence >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /var/lib/arcfence \
    --shell /usr/sbin/nologin --comment "arcfence egress proxy" arcfence
fi
exit 0
