#!/usr/bin/env bash
# Regenerates the golden WAL fixtures in this folder from a real PostgreSQL 15.
#
# Usage: generate.sh [OUTDIR]        (default: the folder holding this script)
#
# For each variant (default, checksums, pglz, lz4, zstd) it runs initdb and a
# postgres on a free loopback port in a temporary directory, runs the workload
# below, and writes into OUTDIR:
#   wal_<variant>/<segment>.zst   the WAL segments covering the workload, zstd
#                                 compressed (bytes after the last record zeroed)
#   wal_<variant>/range.txt       "START END": first record LSN and end of WAL
#   wal_<variant>/waldump.txt     pg_waldump -p DIR START END
#   wal_<variant>/waldump_bkp.txt the same with --bkp-details
# The Rust test tests/golden.rs decodes the segments and compares them with the
# pg_waldump text.
#
# VARIANTS="default lz4" limits the run to some variants.
# Run as root, the servers run as the `postgres` OS user (runuser).
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE}
SEG_SIZE=$((16 * 1024 * 1024))

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 20000))
        if ! (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# Hex LSN "X/Y" to a decimal byte position.
lsn_to_num() {
    local hi=${1%/*} lo=${1#*/}
    echo $(((16#$hi << 32) + 16#$lo))
}

run_variant() {
    local variant=$1 initdb_opts=$2 compression=$3
    local tmp port dest
    tmp=$(mktemp -d /tmp/pgwal_golden.XXXXXX)
    dest="$OUT/wal_$variant"
    port=$(free_port)
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$tmp"
    fi
    [ -n "${KEEP_TMP:-}" ] || trap 'as_pg "$PGBIN/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$tmp"' RETURN

    # shellcheck disable=SC2086
    as_pg "$PGBIN/initdb" -D "$tmp/data" -U postgres --no-sync $initdb_opts >"$tmp/initdb.log"
    cat >>"$tmp/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp'
wal_level = replica
full_page_writes = on
wal_consistency_checking = 'all'
wal_compression = $compression
wal_recycle = off
fsync = off
autovacuum = off
checkpoint_timeout = 1h
max_wal_size = 1GB
max_replication_slots = 4
wal_keep_size = 4GB
EOF
    as_pg "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w start >/dev/null

    local psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)

    # pgbench -i -s 1 writes about 65 MB of WAL with wal_consistency_checking;
    # it runs before the captured range to keep the fixtures small (the range
    # has a COPY and a VACUUM FREEZE for the same record types).
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -i -s 1 -q postgres >"$tmp/pgbench_init.log" 2>&1

    # Start the captured range on a fresh segment.
    "${psql[@]}" -c "CHECKPOINT" -c "SELECT pg_switch_wal()" >/dev/null
    local start end
    start=$("${psql[@]}" -At -c "SELECT pg_current_wal_insert_lsn()")

    "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -t 5 -c 2 postgres >"$tmp/pgbench_run.log" 2>&1
    "${psql[@]}" <<'EOF'
CREATE TABLE golden (id int PRIMARY KEY, note text, payload text);
CREATE INDEX golden_note ON golden (note);
INSERT INTO golden SELECT g, 'row ' || g, NULL FROM generate_series(1, 50) g;
CREATE TABLE golden_copy (id int, name text);
COPY golden_copy FROM stdin;
1	one
2	two
3	three
\.
VACUUM (FREEZE) golden_copy;
-- A 64 kB value: stored out of line in TOAST chunks.
ALTER TABLE golden ALTER COLUMN payload SET STORAGE EXTERNAL;
INSERT INTO golden VALUES (1000, 'big', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) g));
-- A single record bigger than a page (a logical message is not split).
SELECT pg_logical_emit_message(false, 'golden', repeat('x', 20000)) IS NOT NULL;
BEGIN;
INSERT INTO golden VALUES (2000, 'top', NULL);
SAVEPOINT a;
INSERT INTO golden VALUES (2001, 'sub a', NULL);
SAVEPOINT b;
INSERT INTO golden VALUES (2002, 'sub b', NULL);
ROLLBACK TO SAVEPOINT b;
RELEASE SAVEPOINT a;
COMMIT;
-- More than 64 subtransactions with xids: an XLOG_XACT_ASSIGNMENT record.
CREATE TABLE golden_sub (i int);
DO $$
BEGIN
    FOR i IN 1..70 LOOP
        BEGIN
            INSERT INTO golden_sub VALUES (i);
        EXCEPTION WHEN others THEN NULL;
        END;
    END LOOP;
END $$;
DELETE FROM golden WHERE id % 3 = 0;
UPDATE golden SET note = note || ' updated' WHERE id % 5 = 0;
VACUUM golden;
SELECT pg_switch_wal() IS NOT NULL;
-- Records after the segment switch, one with a replication origin.
SELECT pg_replication_origin_create('golden') IS NOT NULL;
SELECT pg_replication_origin_session_setup('golden');
INSERT INTO golden VALUES (3000, 'with origin', NULL);
SELECT pg_replication_origin_session_reset();
CREATE TABLE golden2 AS SELECT g AS id FROM generate_series(1, 100) g;
TRUNCATE golden2;
DROP TABLE golden2;
CHECKPOINT;
EOF
    end=$("${psql[@]}" -At -c "SELECT pg_current_wal_insert_lsn()")
    as_pg "$PGBIN/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null

    # The first record starts right after the long page header of the segment.
    local start_num end_num first_seg last_seg
    start_num=$(lsn_to_num "$start")
    end_num=$(lsn_to_num "$end")
    first_seg=$((start_num / SEG_SIZE))
    last_seg=$(((end_num - 1) / SEG_SIZE))
    local first_rec
    first_rec=$(as_pg "$PGBIN/pg_waldump" -p "$tmp/data/pg_wal" -s "$start" -n 1 2>/dev/null |
        sed -n 's/.*lsn: \([0-9A-F]*\/[0-9A-F]*\),.*/\1/p')

    rm -rf "$dest"
    mkdir -p "$dest"
    # The logical message payload is printed in hex: shorten it.
    local shorten='s/\(payload ([0-9]* bytes):\).*/\1 (hex cut by generate.sh)/'
    as_pg "$PGBIN/pg_waldump" -p "$tmp/data/pg_wal" -s "$first_rec" -e "$end" | sed "$shorten" >"$dest/waldump.txt"
    as_pg "$PGBIN/pg_waldump" -p "$tmp/data/pg_wal" --bkp-details -s "$first_rec" -e "$end" |
        sed "$shorten" >"$dest/waldump_bkp.txt"
    echo "$first_rec $end" >"$dest/range.txt"

    local seg name file
    for seg in $(seq "$first_seg" "$last_seg"); do
        name=$(printf '%08X%08X%08X' 1 $((seg / 256)) $((seg % 256)))
        file="$tmp/$name"
        cp "$tmp/data/pg_wal/$name" "$file"
        if [ "$seg" = "$last_seg" ]; then
            # Zero everything after the end of WAL: keeps the fixture small.
            local keep=$((end_num - seg * SEG_SIZE))
            truncate -s "$keep" "$file"
            truncate -s "$SEG_SIZE" "$file"
        fi
        zstd -q -19 --long=24 -f "$file" -o "$dest/$name.zst"
    done
    chmod 644 "$dest"/*
    echo "$variant: $first_rec .. $end, segments $first_seg..$last_seg, $(grep -c '^rmgr:' "$dest/waldump.txt") records"
}

mkdir -p "$OUT"
for variant in ${VARIANTS:-default checksums pglz lz4 zstd}; do
    case $variant in
    default) run_variant default "" off ;;
    checksums) run_variant checksums "--data-checksums" off ;;
    pglz | lz4 | zstd) run_variant "$variant" "" "$variant" ;;
    *)
        echo "unknown variant $variant" >&2
        exit 1
        ;;
    esac
done
du -sh "$OUT"
