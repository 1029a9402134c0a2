# Mitosis developer commands. `just up` starts the embedded stack; `just test` runs everything.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
bin := venv + "/bin"
data := env_var_or_default("MITO_DATA_DIR", "")

# List the recipes
default:
    @just --list

# Create or refresh .venv with the project and its test tools (only when pyproject changed)
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x {{bin}}/python ] || python3 -m venv {{venv}}
    stamp={{venv}}/.mitosis-installed
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "installing Mitosis and its test tools into {{venv}} …" >&2
        {{bin}}/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
        {{bin}}/python -m pip install -q --disable-pip-version-check -e ".[test]" rust-just 2>&1 | grep -v "^WARNING: Location" || true
        {{bin}}/python -c "import mitosis_server, mitosis_tui, textual, litestar" 
        touch "$stamp"
    fi

# The embedded stack: coordinator (SQLite, local objects, in-process events), one worker for
# the admin's personal group, and the TUI logged in as the admin; quitting the TUI stops all.
# Without a terminal (or with NO_TUI=1) it keeps the coordinator and worker in the foreground.
up *ARGS: setup
    #!/usr/bin/env bash
    set -euo pipefail
    port="${MITO_PORT:-5000}"
    url="http://127.0.0.1:${port}"
    data="${MITO_DATA_DIR:-}"
    state="$(mktemp -d)"
    server_args=(serve -b "127.0.0.1:${port}" {{ARGS}})
    [ -n "$data" ] && server_args+=(--data-dir "$data")
    {{bin}}/mitosis-server "${server_args[@]}" 2>"$state/server.log" &
    server=$!
    worker=""
    cleanup() {
        [ -n "$worker" ] && kill -TERM "$worker" 2>/dev/null && wait "$worker" 2>/dev/null || true
        kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    }
    trap cleanup EXIT INT TERM
    if ! {{bin}}/python - "$url" "$server" <<'PY'
    import os, sys, time, httpx
    url, pid = sys.argv[1], int(sys.argv[2])
    for _ in range(150):
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                sys.exit(0)
        except httpx.TransportError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(1)
        time.sleep(0.2)
    sys.exit(1)
    PY
    then
        echo "the coordinator did not start:" >&2; cat "$state/server.log" >&2; exit 1
    fi
    echo "coordinator: $url   (log: $state/server.log)" >&2
    echo "admin login: mitosis_admin / mitosis_admin (change it: mitosis-tui --batch users change-password)" >&2
    {{bin}}/mitosis-tui --batch -c "$url" login mitosis_admin mitosis_admin >/dev/null
    {{bin}}/mitosis-worker -c "$url" -u mitosis_admin -g mitosis_admin 2>"$state/worker.log" &
    worker=$!
    echo "worker: pid $worker for group mitosis_admin   (log: $state/worker.log)" >&2
    if [ -t 0 ] && [ -t 1 ] && [ -z "${NO_TUI:-}" ]; then
        {{bin}}/mitosis-tui -c "$url" -u mitosis_admin
    else
        echo "no terminal: serving until interrupted (Ctrl+C stops the coordinator and worker)" >&2
        wait "$server"
    fi

# The coordinator alone, with any mitosis-server flags
serve *ARGS: setup
    {{bin}}/mitosis-server serve {{ARGS}}

# A worker (any mitosis-worker flags)
worker *ARGS: setup
    {{bin}}/mitosis-worker {{ARGS}}

# The terminal client (any mitosis-tui flags, e.g. --batch whoami)
tui *ARGS: setup
    {{bin}}/mitosis-tui {{ARGS}}

# The whole test suite on SQLite and PostgreSQL (needs PostgreSQL and Redis on 127.0.0.1)
test *ARGS: setup
    {{bin}}/lint-imports
    {{bin}}/python -m pytest -n 4 --durations=15 {{ARGS}}

# Package boundaries (import-linter) and ruff
lint: setup
    {{bin}}/lint-imports
    {{bin}}/ruff check .
    {{bin}}/ruff format --check .

# Format and fix what ruff can
fmt: setup
    {{bin}}/ruff format .
    {{bin}}/ruff check --fix .

# Benchmarks (see bench/REPORT.md)
bench *ARGS: setup
    {{bin}}/python -m bench {{ARGS}}
