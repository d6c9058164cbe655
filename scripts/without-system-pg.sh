#!/usr/bin/env bash
# `bash scripts/without-system-pg.sh CMD...` (as root): runs CMD where no system PostgreSQL can be
# seen, to show that the demo and the tests need none (they then use the embedded PostgreSQL 18).
# It re-runs itself in a private mount namespace (unshare -m) and there lays empty folders over
# /usr/lib/postgresql and /usr/share/postgresql-common, /dev/null over pg_config, psql and the
# like, and copies of /etc/passwd and /etc/group without the `postgres` user (as on a machine where
# no PostgreSQL package was ever installed); nothing changes outside that namespace, and
# everything is back when CMD ends.
set -euo pipefail
if [ "${1:-}" != "--inside" ]; then
  [ $# -gt 0 ] || { echo "usage: $0 CMD..." >&2; exit 2; }
  exec unshare --mount --propagation private -- bash "$0" --inside "$@"
fi
shift
for d in /usr/lib/postgresql /usr/share/postgresql-common /usr/local/pgsql; do
  [ -d "$d" ] && mount -t tmpfs -o size=1m,mode=0755 none "$d"
done
for f in pg_config psql pg_ctl initdb postgres pg_ctlcluster; do
  p=$(command -v "$f" 2>/dev/null) || continue
  mount --bind /dev/null "$p"
done
HIDE=$(mktemp -d)
trap 'rm -rf "$HIDE"' EXIT
for f in passwd group; do
  grep -v '^postgres:' "/etc/$f" > "$HIDE/$f"
  chmod 644 "$HIDE/$f"
  mount --bind "$HIDE/$f" "/etc/$f"
done
if id postgres >/dev/null 2>&1; then
  echo "without-system-pg: the postgres user is still known" >&2; exit 1
fi
if command -v pg_config >/dev/null 2>&1 && pg_config --bindir >/dev/null 2>&1; then
  echo "without-system-pg: pg_config still answers" >&2; exit 1
fi
if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "without-system-pg: /usr/lib/postgresql still holds a server" >&2; exit 1
fi
echo "without-system-pg: no system PostgreSQL visible (/usr/lib/postgresql empty, pg_config and psql hidden, no postgres user)"
"$@"
