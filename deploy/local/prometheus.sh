#!/usr/bin/env bash
# Prometheus and Alertmanager (Debian's binaries, run directly, not as system services) on
# loopback. Usage: prometheus.sh up|down|status|env|config
#
#   Prometheus    http://127.0.0.1:19090  deploy/prometheus/prometheus.local.yml.in, rendered with the
#                                         ports of lib.sh (`config` prints it): scrapes the test worker
#                                         on 127.0.0.1:19464 (job driftline) every second, evaluates
#                                         deploy/prometheus/rules/, alerts to:
#   Alertmanager  http://127.0.0.1:19094  deploy/alertmanager/alertmanager.yml, clustering off
#
# State: $DRIFTLINE_SERVICES_DIR/{prometheus,alertmanager}/{data,logs,*.pid}; every start from
# stopped begins with empty storage. Prometheus runs with --web.enable-lifecycle, so
# `curl -X POST http://127.0.0.1:19090/-/reload` re-reads the configuration and rules.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROMETHEUS_STATE="$STATE_DIR/prometheus"
PROMETHEUS_PID="$PROMETHEUS_STATE/prometheus.pid"
PROMETHEUS_LOG="$PROMETHEUS_STATE/logs/prometheus.log"
PROMETHEUS_TEMPLATE="$DEPLOY_DIR/prometheus/prometheus.local.yml.in"
PROMETHEUS_CONFIG="$PROMETHEUS_STATE/prometheus.yml"
PROMETHEUS_PATTERN="--web.listen-address=127.0.0.1:$PROMETHEUS_PORT"

ALERTMANAGER_STATE="$STATE_DIR/alertmanager"
ALERTMANAGER_PID="$ALERTMANAGER_STATE/alertmanager.pid"
ALERTMANAGER_LOG="$ALERTMANAGER_STATE/logs/alertmanager.log"
ALERTMANAGER_CONFIG="$DEPLOY_DIR/alertmanager/alertmanager.yml"
ALERTMANAGER_PATTERN="--web.listen-address=127.0.0.1:$ALERTMANAGER_PORT"

# render_config: the local Prometheus configuration, its ports taken from lib.sh (their one home).
render_config() {
    sed -e "s|@PROMETHEUS_PORT@|$PROMETHEUS_PORT|g" \
        -e "s|@ALERTMANAGER_PORT@|$ALERTMANAGER_PORT|g" \
        -e "s|@METRICS_PORT@|$METRICS_PORT|g" \
        -e "s|@RULES_DIR@|$DEPLOY_DIR/prometheus/rules|g" \
        "$PROMETHEUS_TEMPLATE"
}

up_alertmanager() {
    if external DRIFTLINE_ALERTMANAGER_URL "$LOCAL_ALERTMANAGER_URL"; then
        log "alertmanager: using DRIFTLINE_ALERTMANAGER_URL=$DRIFTLINE_ALERTMANAGER_URL (not started here)"
        return 0
    fi
    if pid_alive "$ALERTMANAGER_PID" "$ALERTMANAGER_PATTERN"; then
        log "alertmanager: already running (pid $(<"$ALERTMANAGER_PID"))"
    else
        require_free_port alertmanager "$ALERTMANAGER_PORT"
        rm -rf "$ALERTMANAGER_STATE/data"
        mkdir -p "$ALERTMANAGER_STATE/data" "$ALERTMANAGER_STATE/logs"
        log "alertmanager: starting on $LOCAL_ALERTMANAGER_URL"
        # An empty --cluster.listen-address turns the gossip cluster (default 0.0.0.0:9094) off.
        start_daemon "$ALERTMANAGER_PID" "$ALERTMANAGER_LOG" \
            /usr/bin/prometheus-alertmanager \
            --config.file="$ALERTMANAGER_CONFIG" \
            --storage.path="$ALERTMANAGER_STATE/data" \
            --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
            --cluster.listen-address= \
            --log.level=info
    fi
    wait_until 30 alertmanager "$ALERTMANAGER_PID" "$ALERTMANAGER_PATTERN" "$ALERTMANAGER_LOG" \
        http_ok "$LOCAL_ALERTMANAGER_URL/-/ready"
    log "alertmanager: ready on $LOCAL_ALERTMANAGER_URL"
}

alertmanager_active() {
    curl -s --max-time 2 "$LOCAL_PROMETHEUS_URL/api/v1/alertmanagers" \
        | grep -qF "\"activeAlertmanagers\":[{\"url\":\"http://127.0.0.1:$ALERTMANAGER_PORT/"
}

up_prometheus() {
    if external DRIFTLINE_PROMETHEUS_URL "$LOCAL_PROMETHEUS_URL"; then
        log "prometheus: using DRIFTLINE_PROMETHEUS_URL=$DRIFTLINE_PROMETHEUS_URL (not started here)"
        return 0
    fi
    if pid_alive "$PROMETHEUS_PID" "$PROMETHEUS_PATTERN"; then
        log "prometheus: already running (pid $(<"$PROMETHEUS_PID"))"
    else
        require_free_port prometheus "$PROMETHEUS_PORT"
        rm -rf "$PROMETHEUS_STATE/data"
        mkdir -p "$PROMETHEUS_STATE/data" "$PROMETHEUS_STATE/logs"
        render_config >"$PROMETHEUS_CONFIG"
        log "prometheus: starting $(/usr/bin/prometheus --version 2>&1 | head -n 1 | cut -d ' ' -f 3) on $LOCAL_PROMETHEUS_URL"
        start_daemon "$PROMETHEUS_PID" "$PROMETHEUS_LOG" \
            /usr/bin/prometheus \
            --config.file="$PROMETHEUS_CONFIG" \
            --storage.tsdb.path="$PROMETHEUS_STATE/data" \
            --storage.tsdb.retention.time=1d \
            --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
            --web.enable-lifecycle \
            --log.level=info
    fi
    wait_until 30 prometheus "$PROMETHEUS_PID" "$PROMETHEUS_PATTERN" "$PROMETHEUS_LOG" \
        http_ok "$LOCAL_PROMETHEUS_URL/-/ready"
    # Prometheus discovers its Alertmanagers a few seconds after it is ready: an alert fired
    # before that would go nowhere, so `up` waits for the local Alertmanager to be active.
    if ! external DRIFTLINE_ALERTMANAGER_URL "$LOCAL_ALERTMANAGER_URL"; then
        wait_until 30 "prometheus (alertmanager discovery)" "$PROMETHEUS_PID" "$PROMETHEUS_PATTERN" \
            "$PROMETHEUS_LOG" alertmanager_active
    fi
    log "prometheus: ready on $LOCAL_PROMETHEUS_URL"
}

up() {
    up_alertmanager
    up_prometheus
}

down() {
    daemon_down prometheus DRIFTLINE_PROMETHEUS_URL "$LOCAL_PROMETHEUS_URL" "$PROMETHEUS_PID" "$PROMETHEUS_PATTERN" 20
    daemon_down alertmanager DRIFTLINE_ALERTMANAGER_URL "$LOCAL_ALERTMANAGER_URL" "$ALERTMANAGER_PID" \
        "$ALERTMANAGER_PATTERN" 20
}

status() {
    daemon_status prometheus DRIFTLINE_PROMETHEUS_URL "$LOCAL_PROMETHEUS_URL" "$PROMETHEUS_PID" "$PROMETHEUS_PATTERN" \
        "log $PROMETHEUS_LOG"
    daemon_status alertmanager DRIFTLINE_ALERTMANAGER_URL "$LOCAL_ALERTMANAGER_URL" "$ALERTMANAGER_PID" \
        "$ALERTMANAGER_PATTERN" "log $ALERTMANAGER_LOG"
}

env_lines() {
    printf 'export DRIFTLINE_PROMETHEUS_URL=%q\n' "${DRIFTLINE_PROMETHEUS_URL:-$LOCAL_PROMETHEUS_URL}"
    printf 'export DRIFTLINE_ALERTMANAGER_URL=%q\n' "${DRIFTLINE_ALERTMANAGER_URL:-$LOCAL_ALERTMANAGER_URL}"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) env_lines ;;
    config) render_config ;;
    *) echo "usage: $0 up|down|status|env|config" >&2; exit 2 ;;
esac
