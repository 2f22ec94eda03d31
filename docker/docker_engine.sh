#!/usr/bin/env bash
# Start and stop a Docker engine for the build and the tests, on a machine where none may run.
#
#   docker/docker_engine.sh start|stop|status      (or: source it, then call
#                                                   docker_engine_start / docker_engine_stop)
#
# start: if `docker info` already answers, uses that engine and starts nothing. Otherwise
#   installs Debian's docker.io when dockerd is missing (needs root and apt), starts dockerd in
#   the background, waits until `docker info` answers (DOCKER_ENGINE_TIMEOUT s, default 60), and
#   records its pid in DOCKER_ENGINE_PIDFILE (default /var/run/panther-dockerd.pid).
# stop: stops the dockerd recorded by start, and nothing else (an engine that was already
#   running is left alone).
# The log goes to DOCKER_ENGINE_LOG (default /var/log/panther-dockerd.log).

DOCKER_ENGINE_PIDFILE="${DOCKER_ENGINE_PIDFILE:-/var/run/panther-dockerd.pid}"
DOCKER_ENGINE_LOG="${DOCKER_ENGINE_LOG:-/var/log/panther-dockerd.log}"
DOCKER_ENGINE_TIMEOUT="${DOCKER_ENGINE_TIMEOUT:-60}"
# Set to 1 by docker_engine_start when it started a dockerd (0 when it used one already there).
DOCKER_ENGINE_STARTED=0

_docker_engine_answers() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

_docker_engine_dockerd() {
    command -v dockerd 2>/dev/null || { [[ -x /usr/sbin/dockerd ]] && echo /usr/sbin/dockerd; }
}

docker_engine_start() {
    if _docker_engine_answers; then
        echo "docker_engine: an engine already answers; using it"
        return 0
    fi
    local dockerd
    dockerd=$(_docker_engine_dockerd || true)
    if [[ -z "$dockerd" ]]; then
        if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
            echo "docker_engine: no dockerd, and cannot install one (needs root and apt-get)" >&2
            return 1
        fi
        echo "docker_engine: installing Debian's docker.io"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null || return 1
        dockerd=$(_docker_engine_dockerd || true)
        [[ -n "$dockerd" ]] || { echo "docker_engine: docker.io brought no dockerd" >&2; return 1; }
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "docker_engine: starting dockerd needs root" >&2
        return 1
    fi
    # docker.io's client stands in when no other docker client is on PATH.
    if ! command -v docker >/dev/null 2>&1; then
        export PATH="$PATH:/usr/bin"
    fi
    echo "docker_engine: starting $dockerd (log: $DOCKER_ENGINE_LOG)"
    mkdir -p "$(dirname "$DOCKER_ENGINE_LOG")" "$(dirname "$DOCKER_ENGINE_PIDFILE")"
    # Own session, no stdin: nothing of ours (a Ctrl-C, CI closing stdin) reaches it by accident.
    setsid "$dockerd" --host unix:///var/run/docker.sock \
        </dev/null >>"$DOCKER_ENGINE_LOG" 2>&1 &
    local pid=$!
    echo "$pid" >"$DOCKER_ENGINE_PIDFILE"
    DOCKER_ENGINE_STARTED=1
    local waited=0
    until _docker_engine_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "docker_engine: dockerd exited; the end of its log:" >&2
            tail -n 20 "$DOCKER_ENGINE_LOG" >&2
            rm -f "$DOCKER_ENGINE_PIDFILE"
            DOCKER_ENGINE_STARTED=0
            return 1
        fi
        if (( waited >= DOCKER_ENGINE_TIMEOUT )); then
            echo "docker_engine: no answer from dockerd after ${waited} s; stopping it" >&2
            tail -n 20 "$DOCKER_ENGINE_LOG" >&2
            docker_engine_stop
            DOCKER_ENGINE_STARTED=0
            return 1
        fi
        sleep 1
        waited=$(( waited + 1 ))
    done
    echo "docker_engine: dockerd (pid $pid) answers after ${waited} s"
    DOCKER_ENGINE_STARTED=1
}

docker_engine_stop() {
    [[ -f "$DOCKER_ENGINE_PIDFILE" ]] || return 0
    local pid
    pid=$(cat "$DOCKER_ENGINE_PIDFILE")
    rm -f "$DOCKER_ENGINE_PIDFILE"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        echo "docker_engine: stopping dockerd (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        local waited=0
        while kill -0 "$pid" 2>/dev/null && (( waited < 30 )); do
            sleep 1
            waited=$(( waited + 1 ))
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "docker_engine: dockerd (pid $pid) still runs after 30 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    return 0
}

docker_engine_status() {
    if _docker_engine_answers; then
        if [[ -f "$DOCKER_ENGINE_PIDFILE" ]]; then
            echo "docker_engine: running, started by this script (pid $(cat "$DOCKER_ENGINE_PIDFILE"))"
        else
            echo "docker_engine: running, not started by this script"
        fi
    else
        echo "docker_engine: not answering"
        return 1
    fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -uo pipefail
    case "${1:-}" in
        start) docker_engine_start ;;
        stop) docker_engine_stop ;;
        status) docker_engine_status ;;
        *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
    esac
fi
