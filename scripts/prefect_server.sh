#!/usr/bin/env bash
# A local Prefect server, which schedules need (make deploy): SQLite under
# .run/prefect-server/, loopback only. Usage: scripts/prefect_server.sh up|down|status|url
#
# A thin wrapper over Prefect's own `prefect server start --background`,
# `prefect server status --wait` and `prefect server stop`, which keep the pid
# file in the server's PREFECT_HOME. `up` is idempotent: a server of ours that
# answers is left alone. `start --background` refuses while any pid file
# exists, even one naming a process that is gone, so `up` removes a stale one
# first (and stops only a server of ours). PREFECT_SERVER_PORT (environment, else .run/stack.env, else
# 4200; scripts/ports.sh) and PREFECT_SERVER_HOME (default .run/prefect-server)
# move it. A server is ours only if its process runs with our home and port:
# another checkout's server on the same port is never adopted. The server
# keeps its own home: the flows' ephemeral mode uses PREFECT_HOME
# (.run/prefect), and two servers on one SQLite file would lock each other out.
#
# The API asks for HTTP basic auth: PREFECT_API_AUTH_STRING (generated into
# .run/stack.env by scripts/stack.sh, exported to clients by scripts/with-env)
# is given to the server, through its environment, as
# PREFECT_SERVER_API_AUTH_STRING. Only /health answers without it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=${VGSALES_RUN_DIR:-$ROOT/.run}
SERVER_HOME=${PREFECT_SERVER_HOME:-$RUN/prefect-server}
# shellcheck source=scripts/ports.sh
. "$ROOT/scripts/ports.sh"
PORT=$(port_value PREFECT_SERVER_PORT "$RUN/stack.env")
PID_FILE=$SERVER_HOME/server.pid
LOG_FILE=$SERVER_HOME/server.log
URL=http://127.0.0.1:$PORT/api
PREFECT=$ROOT/.venv/bin/prefect
START_TIMEOUT=${PREFECT_SERVER_START_TIMEOUT:-120}
AUTH=${PREFECT_API_AUTH_STRING:-$(sed -n "s/^PREFECT_API_AUTH_STRING='\(.*\)'$/\1/p" "$RUN/stack.env" 2>/dev/null)}

log() { printf '[prefect-server] %s\n' "$*" >&2; }
die() { printf '[prefect-server] error: %s\n' "$*" >&2; exit 1; }

# Prefect's CLI with this server's home, talking to this server's URL (an
# inherited PREFECT_API_URL would point `status` at another server). The
# server it starts inherits the auth string as its own setting.
prefect() {
    PREFECT_HOME="$SERVER_HOME" PREFECT_API_URL="$URL" \
        PREFECT_API_AUTH_STRING="$AUTH" PREFECT_SERVER_API_AUTH_STRING="$AUTH" \
        PREFECT_SERVER_ANALYTICS_ENABLED=false "$PREFECT" "$@"
}

healthy() { prefect server status >/dev/null 2>&1; }

# The pid in the pid file, if that process is alive and is a Prefect server
# (`start --background` runs it as uvicorn over Prefect's app) with our home.
our_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid=$(cat "$PID_FILE")
    kill -0 "$pid" 2>/dev/null || return 1
    ps -o args= -p "$pid" | grep -qE "prefect server start|prefect\.server\.api\.server:create_app" || return 1
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "PREFECT_HOME=$SERVER_HOME" || return 1
    printf '%s' "$pid"
}

# The port our server was started on (from its command line).
our_port() { ps -o args= -p "$1" | sed -n 's/.*--port \([0-9]*\).*/\1/p'; }

# `prefect server stop` sends SIGTERM and returns; wait until the process is gone.
stop_server() {
    local pid=""
    [ -f "$PID_FILE" ] && pid=$(cat "$PID_FILE")
    prefect server stop >>"$LOG_FILE" 2>&1 || rm -f "$PID_FILE"
    [ -n "$pid" ] || return 0
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    log "pid $pid still alive after 15s: killing"
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_up() {
    [ -x "$PREFECT" ] || die "no $PREFECT: run 'make venv' first"
    [ -n "$AUTH" ] || die "no PREFECT_API_AUTH_STRING in the environment or $RUN/stack.env: run scripts/stack.sh up"
    mkdir -p "$SERVER_HOME"
    local pid
    if pid=$(our_pid); then
        local running
        running=$(our_port "$pid")
        if [ "$running" != "$PORT" ]; then
            die "this checkout's server (pid $pid) runs on port $running, not PREFECT_SERVER_PORT=$PORT; stop it first (make prefect-down) or use PREFECT_SERVER_PORT=$running"
        fi
        if healthy; then
            log "already running on $URL (pid $pid)"
            return 0
        fi
        log "pid $pid does not answer: restarting it"
        stop_server
    elif [ -f "$PID_FILE" ]; then
        # Not our server (gone, or another checkout's): never signal that pid;
        # only the file goes, which `start --background` would refuse.
        log "removing stale pid file $PID_FILE (pid $(cat "$PID_FILE"))"
        rm -f "$PID_FILE"
    fi
    if port_busy "$PORT"; then
        die "port $PORT is in use by another process (another checkout's server?); choose a free one: PREFECT_SERVER_PORT=<port> scripts/stack.sh up records it in $RUN/stack.env"
    fi
    log "starting on $URL (home $SERVER_HOME, log $LOG_FILE)"
    if ! prefect server start --background --host 127.0.0.1 --port "$PORT" \
        >"$LOG_FILE" 2>&1 </dev/null; then
        tail -n 20 "$LOG_FILE" >&2 || true
        die "prefect server start failed; its output is above ($LOG_FILE)"
    fi
    if ! prefect server status --wait --timeout "$START_TIMEOUT" >>"$LOG_FILE" 2>&1; then
        stop_server
        die "not answering after ${START_TIMEOUT}s; stopped it (see $LOG_FILE)"
    fi
    log "ready on $URL (pid $(cat "$PID_FILE")); UI on http://127.0.0.1:$PORT"
}

cmd_down() {
    if ! our_pid >/dev/null; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping pid $(cat "$PID_FILE")"
    stop_server
}

cmd_status() {
    local pid
    if pid=$(our_pid) && healthy; then
        echo "prefect server: running on $URL (pid $pid, home $SERVER_HOME)"
    elif pid=$(our_pid); then
        echo "prefect server: pid $pid alive but $URL not answering (see $LOG_FILE)"
    else
        echo "prefect server: stopped"
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    url) echo "$URL" ;;
    *) die "usage: $0 up|down|status|url" ;;
esac
