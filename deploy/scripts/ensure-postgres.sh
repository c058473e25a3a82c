#!/usr/bin/env bash
# Starts the local PostgreSQL cluster when it is not answering (CI machines boot without it sometimes).
set -euo pipefail
host=${MINSHENG_PG_HOST:-127.0.0.1}
port=${MINSHENG_PG_PORT:-5432}
ready() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }
if ready; then exit 0; fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "PostgreSQL is down; starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
fi
for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
echo "PostgreSQL at $host:$port is not reachable; start it, or run 'make test-sqlite'" >&2
exit 1
