#!/bin/sh
# arcfence preremove: on removal (not on upgrade) stop and disable the
# service. deb passes "remove"; rpm passes the count left after, 0 on erase.
set -e
case "$1" in
  remove|0)
    if [ -d /run/systemd/system ]; then
      systemctl --no-reload disable --now arcfence.service >/dev/null 2>&1 || true
    fi
    ;;
esac
exit 0
