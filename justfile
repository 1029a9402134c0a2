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

# Start the embedded coordinator (SQLite, local objects, in-process events); Ctrl+C stops it
up *ARGS: setup
    @echo "coordinator: http://127.0.0.1:5000   admin login: mitosis_admin / mitosis_admin" >&2
    @echo "from another shell: {{bin}}/mitosis-tui --batch -c http://127.0.0.1:5000 login mitosis_admin mitosis_admin" >&2
    {{bin}}/mitosis-server serve {{ if data != "" { "--data-dir " + data } else { "" } }} {{ARGS}}

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
