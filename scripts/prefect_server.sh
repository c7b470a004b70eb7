#!/usr/bin/env bash
# A local Prefect server, which schedules need (make deploy): SQLite under
# .run/prefect-server/, loopback only. Usage: scripts/prefect_server.sh up|down|status|url
#
# `up` is idempotent: a healthy server started here is left alone; a pid file
# whose process is gone (or is not a Prefect server) is removed and the server
# started again. PREFECT_SERVER_PORT (default 4200) and PREFECT_SERVER_HOME
# (default .run/prefect-server) move it, e.g. for tests. The server keeps its
# own home: the flows' ephemeral mode uses PREFECT_HOME (.run/prefect), and
# two servers on one SQLite file would lock each other out.
#
# The API asks for HTTP basic auth: PREFECT_API_AUTH_STRING (generated into
# .run/stack.env by scripts/stack.sh, exported to clients by scripts/with-env)
# is given to the server, through its environment, as
# PREFECT_SERVER_API_AUTH_STRING. Only /health answers without it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=${VGSALES_RUN_DIR:-$ROOT/.run}
SERVER_HOME=${PREFECT_SERVER_HOME:-$RUN/prefect-server}
PORT=${PREFECT_SERVER_PORT:-4200}
PID_FILE=$SERVER_HOME/server.pid
LOG_FILE=$SERVER_HOME/server.log
URL=http://127.0.0.1:$PORT/api
PREFECT=$ROOT/.venv/bin/prefect
START_TIMEOUT=${PREFECT_SERVER_START_TIMEOUT:-120}
AUTH=${PREFECT_API_AUTH_STRING:-$(sed -n "s/^PREFECT_API_AUTH_STRING='\(.*\)'$/\1/p" "$RUN/stack.env" 2>/dev/null)}

log() { printf '[prefect-server] %s\n' "$*" >&2; }
die() { printf '[prefect-server] error: %s\n' "$*" >&2; exit 1; }

healthy() { curl -fsS --max-time 2 "$URL/health" >/dev/null 2>&1; }

# The pid in the pid file, if that process is alive and is a Prefect server.
our_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid=$(cat "$PID_FILE")
    kill -0 "$pid" 2>/dev/null || return 1
    ps -o args= -p "$pid" | grep -q "prefect server start" || return 1
    printf '%s' "$pid"
}

cmd_up() {
    [ -x "$PREFECT" ] || die "no $PREFECT: run 'make venv' first"
    [ -n "$AUTH" ] || die "no PREFECT_API_AUTH_STRING in the environment or $RUN/stack.env: run scripts/stack.sh up"
    mkdir -p "$SERVER_HOME"
    local pid
    if pid=$(our_pid); then
        if healthy; then
            log "already running on $URL (pid $pid)"
            return 0
        fi
        log "pid $pid is starting; waiting for it"
    else
        if [ -f "$PID_FILE" ]; then
            log "removing stale pid file $PID_FILE"
            rm -f "$PID_FILE"
        fi
        healthy && die "something else answers on $URL; set PREFECT_SERVER_PORT to another port"
        log "starting on $URL (home $SERVER_HOME, log $LOG_FILE)"
        # Its own session, so `down` stops the server and the uvicorn process
        # it spawns together; no inherited PREFECT_API_URL, which would point
        # the server at another server.
        env -u PREFECT_API_URL \
            PREFECT_HOME="$SERVER_HOME" \
            PREFECT_SERVER_API_AUTH_STRING="$AUTH" \
            PREFECT_SERVER_ANALYTICS_ENABLED=false \
            setsid "$PREFECT" server start --host 127.0.0.1 --port "$PORT" \
            >"$LOG_FILE" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
    fi
    local waited=0
    until healthy; do
        if ! our_pid >/dev/null; then
            tail -n 30 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "the server exited while starting; its log is above ($LOG_FILE)"
        fi
        [ "$waited" -lt "$START_TIMEOUT" ] || die "not healthy after ${START_TIMEOUT}s; see $LOG_FILE"
        sleep 1
        waited=$((waited + 1))
    done
    log "ready on $URL (pid $(our_pid)); UI on http://127.0.0.1:$PORT"
}

cmd_down() {
    local pid
    if ! pid=$(our_pid); then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping pid $pid"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still alive after 15s: killing"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
}

cmd_status() {
    local pid
    if pid=$(our_pid) && healthy; then
        echo "prefect server: running on $URL (pid $pid, home $SERVER_HOME)"
    elif pid=$(our_pid); then
        echo "prefect server: pid $pid alive but $URL not healthy (see $LOG_FILE)"
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
