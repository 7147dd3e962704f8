# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# Shared helpers of the deploy/local service scripts. Sourced, never run.
#
# Conventions: every message goes to stderr (stdout carries only the `export` lines of
# services.sh); every daemon runs on 127.0.0.1 in its own session (setsid), with stdin from
# /dev/null and stdout/stderr in a log file, so that `eval "$(services.sh up)"` returns at once;
# its pid is written to $DRIFTLINE_SERVICES_DIR/<name>/<name>.pid by the process itself.

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$LOCAL_DIR/../.." && pwd)"
DEPLOY_DIR="$REPO_DIR/deploy"

STATE_DIR="${DRIFTLINE_SERVICES_DIR:-$REPO_DIR/.services}"
CACHE_DIR="${DRIFTLINE_CACHE_DIR:-${HOME:-/root}/.cache/driftline}"

# Fixed loopback ports (documented in deploy/local/README.md), below the ephemeral port range so that
# no client's source port can take one of them. DRIFTLINE_PORT_OFFSET (a multiple of 100, default 0)
# shifts them all, so that a second stack (another checkout, a CI run beside a developer's services)
# can run on the same machine: each checkout keeps its own state directory.
PORT_OFFSET="${DRIFTLINE_PORT_OFFSET:-0}"
if ! [[ "$PORT_OFFSET" =~ ^[0-9]+$ ]] || ((PORT_OFFSET % 100 || PORT_OFFSET > 9000)); then
    printf '[services] ERROR: DRIFTLINE_PORT_OFFSET=%s: a multiple of 100 from 0 to 9000\n' "$PORT_OFFSET" >&2
    exit 2
fi
KAFKA_PORT=$((19092 + PORT_OFFSET))
KAFKA_CONTROLLER_PORT=$((19093 + PORT_OFFSET))
POSTGRES_PORT=$((15432 + PORT_OFFSET))
PROMETHEUS_PORT=$((19090 + PORT_OFFSET))
ALERTMANAGER_PORT=$((19094 + PORT_OFFSET))
METRICS_PORT=$((19464 + PORT_OFFSET))
SCHEMA_REGISTRY_PORT=$((18081 + PORT_OFFSET))
# Kafka's secured listeners (deploy/local/kafka.sh): SCRAM over plain TCP, SCRAM over TLS, TLS with client certificates.
KAFKA_SCRAM_PORT=$((19095 + PORT_OFFSET))
KAFKA_TLS_PORT=$((19096 + PORT_OFFSET))
KAFKA_MTLS_PORT=$((19097 + PORT_OFFSET))

# What the local services are reached at (the values services.sh exports).
LOCAL_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
LOCAL_KAFKA_SCRAM_BOOTSTRAP="127.0.0.1:$KAFKA_SCRAM_PORT"
LOCAL_KAFKA_TLS_BOOTSTRAP="127.0.0.1:$KAFKA_TLS_PORT"
LOCAL_KAFKA_MTLS_BOOTSTRAP="127.0.0.1:$KAFKA_MTLS_PORT"
LOCAL_DATABASE_URL="postgresql+psycopg://driftline@127.0.0.1:$POSTGRES_PORT/driftline"
LOCAL_PROMETHEUS_URL="http://127.0.0.1:$PROMETHEUS_PORT"
LOCAL_ALERTMANAGER_URL="http://127.0.0.1:$ALERTMANAGER_PORT"
# The Schema Registry's Confluent-compatible API (Apicurio serves it under /apis/ccompat/v7).
LOCAL_SCHEMA_REGISTRY_URL="http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7"

log() {
    printf '[services %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

# external VARIABLE LOCAL_VALUE: true when VARIABLE is set to an address other than ours, i.e. the
# service is provided by someone else (docker compose, a shared server): not started, not stopped.
external() {
    local value="${!1:-}"
    [[ -n "$value" && "$value" != "$2" ]]
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_alive PIDFILE PATTERN: the pid in PIDFILE is a live process whose command line contains
# PATTERN (guards against a stale pid file whose number was reused by another process).
pid_alive() {
    local pidfile="$1" pattern="$2" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(<"$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern"
}

# start_daemon PIDFILE LOGFILE COMMAND...: run COMMAND detached, in its own session.
start_daemon() {
    local pidfile="$1" logfile="$2"
    shift 2
    mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
    rm -f "$pidfile"
    # The child writes its own pid and then execs, so the pid file names the daemon itself.
    # shellcheck disable=SC2016  # expanded by the child shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
    local waited=0
    while [[ ! -s "$pidfile" ]] && ((waited < 50)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    [[ -s "$pidfile" ]] || die "could not start $*"
}

# stop_daemon NAME PIDFILE PATTERN [TIMEOUT]: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL.
stop_daemon() {
    local name="$1" pidfile="$2" pattern="$3" timeout="${4:-30}" pid waited=0
    if ! pid_alive "$pidfile" "$pattern"; then
        rm -f "$pidfile"
        return 0
    fi
    pid="$(<"$pidfile")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < timeout * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop within ${timeout}s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

# left_alone NAME VARIABLE LOCAL_ADDRESS: `down` of a service that VARIABLE says is someone else's
# (see external): true, and says so.
left_alone() {
    external "$2" "$3" || return 1
    log "$1: $2=${!2} is not ours: left alone"
}

# daemon_down NAME VARIABLE LOCAL_ADDRESS PIDFILE PATTERN TIMEOUT: stop a daemon these scripts
# started (see stop_daemon), unless it is someone else's (see left_alone).
daemon_down() {
    left_alone "$1" "$2" "$3" || stop_daemon "$1" "$4" "$5" "$6"
}

# daemon_status NAME VARIABLE LOCAL_ADDRESS PIDFILE PATTERN DETAIL: the `status` line of a daemon
# these scripts start: external (VARIABLE's address), running (with its pid and DETAIL), stopped.
daemon_status() {
    local name="$1" variable="$2" address="$3" pidfile="$4" pattern="$5" detail="$6"
    if external "$variable" "$address"; then
        printf '%-14sexternal  %s\n' "$name" "${!variable}"
    elif pid_alive "$pidfile" "$pattern"; then
        printf '%-14srunning   %s (pid %s, %s)\n' "$name" "$address" "$(<"$pidfile")" "$detail"
    else
        printf '%-14sstopped\n' "$name"
    fi
}

# wait_until TIMEOUT DESCRIPTION PIDFILE PATTERN LOG COMMAND...: poll COMMAND until it succeeds;
# fail early if the daemon died, or after TIMEOUT seconds, showing the end of LOG (a file, or a
# directory whose *.log files are shown).
wait_until() {
    local timeout="$1" description="$2" pidfile="$3" pattern="$4" logfile="$5"
    shift 5
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ! pid_alive "$pidfile" "$pattern"; then
            log "$description: the process exited"
            show_log "$logfile"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "$description: not ready after ${timeout}s"
            show_log "$logfile"
            return 1
        fi
        sleep 0.5
    done
}

# show_log FILE|DIRECTORY: the last lines of a log file (or of each *.log of a directory) on stderr.
show_log() {
    local file
    if [[ -d "$1" ]]; then
        for file in "$1"/*.log; do
            [[ -s "$file" ]] && show_log "$file"
        done
        return 0
    fi
    log "last lines of $1:"
    tail -n 40 "$1" >&2 2>/dev/null || true
}

# http_ok URL: the URL answers 200.
http_ok() {
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" == 200 ]]
}

# require_free_port NAME PORT: fail if something that is not ours already listens on PORT.
require_free_port() {
    if port_open "$2"; then
        die "$1: port 127.0.0.1:$2 is already in use by another process (not started by these scripts)"
    fi
}

# apt_install PACKAGE...: install Debian packages (as root, or through sudo).
apt_install() {
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "missing packages ($*) and not root: install them with apt-get"
        sudo=(sudo)
    fi
    log "installing Debian packages: $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# postgres_bindir: the newest installed PostgreSQL server's bin directory (empty if none).
postgres_bindir() {
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$dir" ]] && dirname "$dir"
    return 0
}

# missing_packages: the Debian packages that the local services need and that are not installed.
missing_packages() {
    local missing=()
    command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
    command -v mvn >/dev/null 2>&1 || missing+=(maven)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    # The placeholder certificate of Kafka's TLS listener (kafka.sh).
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    [[ -n "$(postgres_bindir)" ]] || missing+=(postgresql)
    [[ -x /usr/bin/prometheus && -x /usr/bin/promtool ]] || missing+=(prometheus)
    [[ -x /usr/bin/prometheus-alertmanager && -x /usr/bin/amtool ]] || missing+=(prometheus-alertmanager)
    # Not a service: the browser the report test screenshots its page with (tests/integration/test_report_from_database.py).
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    # Not a service: npm installs the Grafana dashboard's schema check (deploy/grafana/schema/install.sh).
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    echo "${missing[@]}"
}

# stop_package_services PACKAGE...: a fresh package install may start the distribution's own
# instance (Prometheus on :9090, Alertmanager on :9093, PostgreSQL's "main" cluster on :5432).
# They do not clash with our ports, but nobody asked for them: stop what the install started.
stop_package_services() {
    local package
    for package in "$@"; do
        case "$package" in
            prometheus | prometheus-alertmanager)
                if command -v service >/dev/null 2>&1; then
                    service "$package" stop >/dev/null 2>&1 || true
                fi
                ;;
            postgresql)
                if command -v service >/dev/null 2>&1; then
                    service postgresql stop >/dev/null 2>&1 || true
                fi
                ;;
        esac
    done
}

# ensure_packages: install whatever is missing, once, before services start in parallel
# (dpkg takes a lock; two installs at once would fail).
ensure_packages() {
    local missing
    missing="$(missing_packages)"
    if [[ -n "$missing" ]]; then
        # shellcheck disable=SC2086
        apt_install $missing
        # shellcheck disable=SC2086
        stop_package_services $missing
        missing="$(missing_packages)"
        [[ -z "$missing" ]] || die "still missing after apt-get install: $missing"
    fi
}
