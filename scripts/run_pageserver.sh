#!/usr/bin/env bash
# Runs a local page server in the foreground with embedded defaults:
# work directory .local/pageserver, HTTP on 127.0.0.1:9898, page service on
# 127.0.0.1:64000, no authentication. Extra arguments go to the page server
# (e.g. -c listen_http_addr=127.0.0.1:9899). Ctrl-C stops it cleanly.
. "$(dirname "$0")/common.sh"
ensure_rust
ensure_postgres
log "building the page server (release)"
cargo build --release --bin pageserver --bin cplane --bin pagectl
WORKDIR=${PAGESERVER_WORKDIR:-$REPO_ROOT/.local/pageserver}
if [ ! -f "$WORKDIR/pageserver.toml" ]; then
    ./target/release/pageserver --workdir "$WORKDIR" --init
fi
log "starting the page server in $WORKDIR"
exec ./target/release/pageserver --workdir "$WORKDIR" "$@"
