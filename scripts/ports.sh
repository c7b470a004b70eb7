#!/usr/bin/env bash
# Every port the project listens on, in one place: the defaults, the variable
# that moves each, and the rule that picks a value (environment, else
# .run/stack.env, else the default). Sourced by stack.sh and prefect_server.sh;
# on the command line `scripts/ports.sh NAME` prints one port (Makefile) and
# `scripts/ports.sh` lists them all.
#
# Two checkouts on one machine each have their own .run/stack.env, so each
# keeps its own ports once `scripts/stack.sh up` has recorded them there.

# API_PORT is nginx's; API_INSTANCE_PORT is the first of the API instances'
# loopback ports (API_INSTANCES of them, one after the other). MLFLOW_PORT is
# the registry server's (scripts/stack.sh); MLFLOW_UI_PORT is `make mlflow-ui`'s,
# a UI over the SQLite store older checkouts kept.
PORT_NAMES=(MARIADB_PORT REDIS_PORT API_PORT API_INSTANCE_PORT PREFECT_SERVER_PORT DBT_DOCS_PORT MLFLOW_UI_PORT MLFLOW_PORT)

port_default() {
    case $1 in
        MARIADB_PORT) echo 33306 ;;
        REDIS_PORT) echo 36379 ;;
        API_PORT) echo 8000 ;;
        API_INSTANCE_PORT) echo 8001 ;;
        PREFECT_SERVER_PORT) echo 4200 ;;
        DBT_DOCS_PORT) echo 8080 ;;
        MLFLOW_UI_PORT) echo 5000 ;;
        MLFLOW_PORT) echo 5005 ;;
        *) return 1 ;;
    esac
}

# The value of NAME in a KEY='value' file, without sourcing it (sourcing
# would let the file win over the environment).
port_in_file() {
    [ -f "$2" ] || return 0
    sed -n "s/^$1=['\"]\{0,1\}\([0-9]*\)['\"]\{0,1\}\$/\1/p" "$2" | tail -n 1
}

# PORT_ENV_<NAME> holds what the environment said when the script started,
# before any stack.env was sourced over it.
for _name in "${PORT_NAMES[@]}"; do
    if [ -n "${!_name:-}" ]; then
        printf -v "PORT_ENV_$_name" '%s' "${!_name}"
    fi
done
unset _name

# The port NAME resolves to: environment > env file ($2) > default.
port_value() {
    local from_env="PORT_ENV_$1" value
    value=${!from_env:-}
    [ -n "$value" ] || value=$(port_in_file "$1" "$2")
    [ -n "$value" ] || value=$(port_default "$1")
    case $value in
        '' | *[!0-9]*) printf '[ports] error: %s=%s is not a port number\n' "$1" "$value" >&2; return 1 ;;
    esac
    printf '%s' "$value"
}

# True when something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    ENV_FILE=${VGSALES_RUN_DIR:-$ROOT/.run}/stack.env
    if [ $# -eq 0 ]; then
        for name in "${PORT_NAMES[@]}"; do echo "$name=$(port_value "$name" "$ENV_FILE")"; done
    else
        port_default "$1" >/dev/null || { echo "usage: $0 [${PORT_NAMES[*]}]" >&2; exit 2; }
        port_value "$1" "$ENV_FILE"
        echo
    fi
fi
