# Shared set-up for the scripts in this folder: sourced, not run.
# Installs what the project needs when it is missing; safe to run repeatedly.

set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

log() { printf '==> %s\n' "$*" >&2; }

# apt_ensure CMD PACKAGE...: installs PACKAGEs when CMD is not on PATH.
apt_ensure() {
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    log "installing $* (for $cmd)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || {
        echo "cargo not found: install the Rust toolchain (rustup) first" >&2
        exit 1
    }
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        log "adding rustfmt and clippy"
        rustup component add rustfmt clippy
    fi
}

# PostgreSQL 15 server binaries: the page server runs initdb and
# pg_basebackup from them, and the tests run real primaries.
ensure_postgres() {
    apt_ensure /usr/lib/postgresql/15/bin/initdb postgresql-15
}

# promtool (Debian package prometheus): test_metrics.py checks /metrics with it.
ensure_promtool() {
    apt_ensure promtool --no-install-recommends prometheus
}

# A virtualenv with the pytest suite's packages, at .venv.
ensure_python() {
    apt_ensure python3 python3 python3-venv python3-pip
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        python3 -m venv .venv
    fi
    local stamp=.venv/.requirements.sha
    local want
    want=$(sha256sum test_runner/requirements.txt | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing Python test dependencies"
        .venv/bin/pip install -q --upgrade pip >/dev/null
        .venv/bin/pip install -q -r test_runner/requirements.txt
        echo "$want" >"$stamp"
    fi
}
