#!/usr/bin/env bash
# Runs every check and test: formatting, lints, Rust unit and property tests,
# and the pytest integration suite against the real binaries. Installs what
# is missing first. Extra arguments go to pytest (e.g. -k auth).
. "$(dirname "$0")/common.sh"
ensure_rust
ensure_postgres
ensure_python

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --all-features -- -D warnings

log "Rust tests"
# The remote_storage conformance tests start this S3-compatible server
# (moto[server], installed into .venv by ensure_python).
export MOTO_SERVER="$REPO_ROOT/.venv/bin/moto_server"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-features --no-fail-fast
else
    cargo test --workspace --all-features
fi

log "building binaries for the integration suite (with failpoints)"
cargo build --workspace --bins --features pageserver/testing

log "pytest"
cd test_runner
NEON_BIN="$REPO_ROOT/target/debug" "$REPO_ROOT/.venv/bin/python" -m pytest -n 2 "$@"
