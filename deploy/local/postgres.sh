#!/usr/bin/env bash
# PostgreSQL (Debian's server binaries, run directly with pg_ctl, not as a system service) on
# 127.0.0.1:15432, TCP only (no unix socket), role `driftline` (superuser, trust on loopback) and
# database `driftline`. Usage: postgres.sh up|down|status|env|start
#
# One exception to trust: members of the role `driftline_password_login` (NOLOGIN) must give their password
# (scram-sha-256), so that a test can check that a password given to driftline really reaches the server
# (tests/integration/test_secure_kafka.py logs in as such a member).
#
# State: $DRIFTLINE_SERVICES_DIR/postgres/{data,logs}. Every `up` from stopped runs initdb on a
# fresh, empty cluster; `up` while running keeps it. For fault tests, `start` starts the server again
# on its existing cluster after `down` (what a database back from an outage has). PostgreSQL refuses to run as root: as root,
# the cluster belongs to the `postgres` system user that Debian's package creates.
# This is a throwaway test cluster: fsync is off (a crash of the machine can lose it, nothing else).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_STATE="$STATE_DIR/postgres"
PG_USER_OS=""
if ((EUID == 0)); then
    PG_USER_OS=postgres
fi

# as_owner COMMAND...: run COMMAND as the cluster's owner.
as_owner() {
    if [[ -n "$PG_USER_OS" ]]; then
        runuser -u "$PG_USER_OS" -- "$@"
    else
        "$@"
    fi
}

pg_state_dir() {
    # The owner must be able to reach the state directory; a repository under /root is not
    # reachable by `postgres`, so fall back to a directory of its own under /tmp then.
    if [[ -n "$PG_USER_OS" ]]; then
        mkdir -p "$PG_STATE"
        if ! runuser -u "$PG_USER_OS" -- test -x "$PG_STATE"; then
            PG_STATE="${TMPDIR:-/tmp}/driftline-postgres-$(printf '%s' "$STATE_DIR" | cksum | cut -d ' ' -f 1)"
        fi
    fi
    PG_DATA="$PG_STATE/data"
    PG_LOG="$PG_STATE/logs/postgres.log"
}

pg_bin() {
    local bindir
    bindir="$(postgres_bindir)"
    [[ -n "$bindir" ]] || die "postgres: no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)"
    echo "$bindir"
}

running() {
    [[ -f "$PG_DATA/postmaster.pid" ]] && as_owner "$(pg_bin)/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

psql_driftline() {
    "$(pg_bin)/psql" -X -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U driftline -v ON_ERROR_STOP=1 "$@"
}

database_ready() {
    "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U driftline -d driftline \
        && [[ "$(psql_driftline -d driftline -tAc 'select 1')" == 1 ]]
}

up() {
    if external DRIFTLINE_DATABASE_URL "$LOCAL_DATABASE_URL"; then
        log "postgres: using DRIFTLINE_DATABASE_URL=$DRIFTLINE_DATABASE_URL (not started here)"
        return 0
    fi
    pg_state_dir
    local bindir
    bindir="$(pg_bin)"
    if running; then
        log "postgres: already running (data $PG_DATA)"
    else
        require_free_port postgres "$POSTGRES_PORT"
        if [[ -n "$PG_USER_OS" ]]; then
            id "$PG_USER_OS" >/dev/null 2>&1 || die "postgres: no '$PG_USER_OS' system user (apt-get install postgresql creates it)"
        fi
        mkdir -p "$PG_STATE/logs"
        rm -rf "$PG_DATA"
        mkdir -p "$PG_DATA"
        chmod 700 "$PG_DATA"
        [[ -z "$PG_USER_OS" ]] || chown -R "$PG_USER_OS:" "$PG_STATE"
        as_owner touch "$PG_LOG"
        log "postgres: initdb of a fresh cluster ($("$bindir/postgres" --version))"
        as_owner "$bindir/initdb" -D "$PG_DATA" -U driftline --auth=trust --encoding=UTF8 --locale=C \
            --no-sync >>"$PG_LOG" 2>&1 || { show_log "$PG_LOG"; die "postgres: initdb failed"; }
        as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# deploy/local/postgres.sh: loopback TCP only, fixed port, a throwaway test cluster.
listen_addresses = '127.0.0.1'
port = $POSTGRES_PORT
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
        # pg_hba.conf takes the first line that matches: the password rule goes before initdb's trust lines.
        { printf '%s\n' "# deploy/local/postgres.sh: members of driftline_password_login log in with their password." \
              "host all +driftline_password_login 127.0.0.1/32 scram-sha-256"; cat "$PG_DATA/pg_hba.conf"; } \
            | as_owner tee "$PG_DATA/pg_hba.conf.new" >/dev/null
        as_owner mv "$PG_DATA/pg_hba.conf.new" "$PG_DATA/pg_hba.conf"
        log "postgres: starting on 127.0.0.1:$POSTGRES_PORT"
        # pg_ctl forks the postmaster with stdin/stdout/stderr on the log: nothing holds our stdout.
        as_owner "$bindir/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s </dev/null >/dev/null 2>&1 \
            || { show_log "$PG_LOG"; die "postgres: pg_ctl start failed"; }
        if [[ -z "$(psql_driftline -d postgres -tAc "select 1 from pg_database where datname = 'driftline'")" ]]; then
            psql_driftline -d postgres -c 'CREATE DATABASE driftline OWNER driftline' >&2
        fi
        psql_driftline -d postgres -c 'CREATE ROLE driftline_password_login NOLOGIN' >&2
    fi
    local deadline=$((SECONDS + 30))
    until database_ready; do
        ((SECONDS < deadline)) || { show_log "$PG_LOG"; die "postgres: not ready after 30s"; }
        sleep 0.5
    done
    log "postgres: ready on 127.0.0.1:$POSTGRES_PORT (database driftline)"
}

# start: start the server on its existing cluster (after `down`), without initdb.
start_existing() {
    pg_state_dir
    local bindir
    bindir="$(pg_bin)"
    if running; then
        log "postgres: already running (data $PG_DATA)"
    else
        [[ -f "$PG_DATA/PG_VERSION" ]] || die "postgres: no existing cluster in $PG_DATA to start (use up)"
        require_free_port postgres "$POSTGRES_PORT"
        log "postgres: starting on its existing cluster"
        as_owner "$bindir/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s </dev/null >/dev/null 2>&1 \
            || { show_log "$PG_LOG"; die "postgres: pg_ctl start failed"; }
    fi
    local deadline=$((SECONDS + 30))
    until database_ready; do
        ((SECONDS < deadline)) || { show_log "$PG_LOG"; die "postgres: not ready after 30s"; }
        sleep 0.5
    done
    log "postgres: ready on 127.0.0.1:$POSTGRES_PORT (database driftline)"
}

down() {
    left_alone postgres DRIFTLINE_DATABASE_URL "$LOCAL_DATABASE_URL" && return 0
    pg_state_dir
    running || return 0
    log "postgres: stopping"
    local bindir
    bindir="$(pg_bin)"
    # "fast" rolls back open transactions and disconnects clients; then "immediate", then SIGKILL.
    if ! as_owner "$bindir/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 30 -s >/dev/null 2>&1; then
        log "postgres: no fast shutdown within 30s: immediate shutdown"
        as_owner "$bindir/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 10 -s >/dev/null 2>&1 || {
            local pid
            pid="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
            if [[ "$pid" =~ ^[0-9]+$ ]]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        }
    fi
}

status() {
    if external DRIFTLINE_DATABASE_URL "$LOCAL_DATABASE_URL"; then
        echo "postgres      external  $DRIFTLINE_DATABASE_URL"
        return 0
    fi
    pg_state_dir
    if running; then
        echo "postgres      running   127.0.0.1:$POSTGRES_PORT (pid $(head -n 1 "$PG_DATA/postmaster.pid"), data $PG_DATA)"
    else
        echo "postgres      stopped"
    fi
}

env_lines() {
    printf 'export DRIFTLINE_DATABASE_URL=%q\n' "${DRIFTLINE_DATABASE_URL:-$LOCAL_DATABASE_URL}"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) env_lines ;;
    start) start_existing ;;
    *) echo "usage: $0 up|down|status|env|start" >&2; exit 2 ;;
esac
