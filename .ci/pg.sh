#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster on 127.0.0.1:$PGPORT (default 55432).
# usage: .ci/pg.sh start DIR | stop DIR
set -euo pipefail
action=$1; W=$2; PGPORT=${PGPORT:-55432}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
case "$action" in
  start)
    install -d -o postgres -g postgres "$W"
    (cd /tmp && runuser -u postgres -- "$PGBIN/initdb" -D "$W/data" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 --no-sync >"$W/initdb.log" 2>&1)
    (cd /tmp && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/data" -l "$W/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $W -c fsync=off -c max_connections=200" start >/dev/null)
    ;;
  stop)
    (cd /tmp && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/data" -m fast -w stop >/dev/null) || true
    ;;
esac
