#!/usr/bin/env bash
# The real services of driftline's tests, on loopback, without Docker (see README.md here).
#
#   eval "$(bash deploy/local/services.sh up)"   install what is missing, start what is not running,
#                                                 wait until ready, print the `export` lines
#   bash deploy/local/services.sh env            the same `export` lines, starting nothing
#   bash deploy/local/services.sh status         what runs
#   bash deploy/local/services.sh down           stop what these scripts started
#
# Only the `export` lines go to stdout; progress and logs go to stderr. A service whose variable
# (DRIFTLINE_KAFKA_BOOTSTRAP, DRIFTLINE_DATABASE_URL, DRIFTLINE_PROMETHEUS_URL,
# DRIFTLINE_ALERTMANAGER_URL) is already set to another address — `docker compose up`, a shared
# server — is neither started nor stopped here, and its address is exported as given.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICE_SCRIPTS=(kafka.sh postgres.sh prometheus.sh)
# The Schema Registry (Apicurio, Confluent API): DRIFTLINE_SCHEMA_REGISTRY_URL.
SERVICE_SCRIPTS+=(registry.sh)

env_lines() {
    local script
    for script in "${SERVICE_SCRIPTS[@]}"; do
        bash "$LOCAL_DIR/$script" env
    done
    printf 'export DRIFTLINE_METRICS_PORT=%q\n' "${DRIFTLINE_METRICS_PORT:-$METRICS_PORT}"
}

# with_lock COMMAND...: one `up` or `down` at a time per state directory (several shells, or
# several people, may share a working tree).
with_lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    if ! flock -w 300 9; then
        die "another services.sh up/down holds $STATE_DIR/.lock for more than 300s"
    fi
    "$@"
}

up() {
    local started=$SECONDS
    ensure_packages
    # Grafana's dashboard types and the TypeScript compiler, for tests/unit/deploy/test_grafana.py (cached).
    bash "$LOCAL_DIR/../grafana/schema/install.sh" </dev/null >/dev/null 9>&-
    # Fetch the Kafka jars before the services start in parallel (a download).
    if ! external DRIFTLINE_KAFKA_BOOTSTRAP "$LOCAL_KAFKA_BOOTSTRAP"; then
        bash "$LOCAL_DIR/kafka.sh" fetch </dev/null >&2 9>&-
    fi
    # Build the Schema Registry before the parallel start too (Maven, into the same local repository).
    if ! external DRIFTLINE_SCHEMA_REGISTRY_URL "$LOCAL_SCHEMA_REGISTRY_URL"; then
        bash "$LOCAL_DIR/registry.sh" fetch </dev/null >&2 9>&-
    fi
    # The services start in parallel (the JVMs' start-up dominates); each waits for its own readiness.
    local script pids=() failed=()
    for script in "${SERVICE_SCRIPTS[@]}"; do
        # 9>&-: the daemons must not inherit the lock, or it would be held as long as they run.
        bash "$LOCAL_DIR/$script" up </dev/null >&2 9>&- &
        pids+=("$!")
    done
    local index
    for index in "${!pids[@]}"; do
        wait "${pids[$index]}" || failed+=("${SERVICE_SCRIPTS[$index]%.sh}")
    done
    if ((${#failed[@]})); then
        die "could not start: ${failed[*]} (logs under $STATE_DIR; \`bash $0 down\` stops the others)"
    fi
    log "all services ready in $((SECONDS - started))s"
    env_lines
}

down() {
    local script status=0
    for script in "${SERVICE_SCRIPTS[@]}"; do
        bash "$LOCAL_DIR/$script" down </dev/null >&2 9>&- || status=1
    done
    return "$status"
}

status() {
    local script
    for script in "${SERVICE_SCRIPTS[@]}"; do
        bash "$LOCAL_DIR/$script" status
    done
}

case "${1:-}" in
    up) with_lock up ;;
    down) with_lock down ;;
    status) status ;;
    env) env_lines ;;
    *)
        echo "usage: $0 up|down|status|env" >&2
        exit 2
        ;;
esac
