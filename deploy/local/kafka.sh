#!/usr/bin/env bash
# Apache Kafka 3.9.1 in KRaft mode (one node, broker + controller) on 127.0.0.1, run with Java
# from its Maven Central jars — no Docker, no tarball. Usage: kafka.sh up|down|status|env|kill|start
#
#   PLAINTEXT  127.0.0.1:19092   (what clients use: DRIFTLINE_KAFKA_BOOTSTRAP)
#   CONTROLLER 127.0.0.1:19093
#
# Jars: $DRIFTLINE_CACHE_DIR/kafka-3.9.1/libs (fetched once with Maven from kafka/pom.xml).
# State: $DRIFTLINE_SERVICES_DIR/kafka/{data,logs,server.properties,kafka.pid}. Every `up` from
# stopped formats a fresh, empty data directory; `up` while running keeps the running broker.
# For fault tests: `kill` SIGKILLs the broker (a crash: no controlled shutdown), `start` starts it
# again on its existing data directory (what a restarted broker finds).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION=3.9.1
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
KAFKA_STATE="$STATE_DIR/kafka"
KAFKA_PID="$KAFKA_STATE/kafka.pid"
KAFKA_LOG="$KAFKA_STATE/logs/stdout.log"
KAFKA_CONFIG="$KAFKA_STATE/server.properties"
# What identifies our broker's command line (the pid file's process must match it).
KAFKA_PATTERN="kafka.Kafka $KAFKA_CONFIG"

fetch_jars() {
    [[ -f "$KAFKA_LIBS/.complete" ]] && return 0
    log "kafka: fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its dependencies from Maven Central"
    # Fetched into a staging directory, moved into place when complete: an interrupted fetch
    # leaves no half-filled libs/ behind (services.sh's lock keeps two fetches apart).
    local staging="$KAFKA_LIBS.partial"
    rm -rf "$staging"
    mkdir -p "$staging"
    local maven_log="$CACHE_DIR/kafka-$KAFKA_VERSION.mvn.log"
    mvn -B -Dstyle.color=never -f "$LOCAL_DIR/kafka/pom.xml" \
        -Dmaven.repo.local="$CACHE_DIR/m2" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$staging" >"$maven_log" 2>&1 \
        || { tail -n 40 "$maven_log" >&2; die "kafka: mvn dependency:copy-dependencies failed (log: $maven_log)"; }
    [[ -f "$staging/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka: kafka_2.13-$KAFKA_VERSION.jar was not fetched"
    touch "$staging/.complete"
    rm -rf "$KAFKA_LIBS"
    mv "$staging" "$KAFKA_LIBS"
}

java_opts=(
    -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    -Dlog4j.configuration="file:$LOCAL_DIR/kafka/log4j.properties"
    -Dkafka.logs.dir="$KAFKA_STATE/logs"
)
tool_opts=(
    -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    -Dlog4j.configuration="file:$LOCAL_DIR/kafka/tools-log4j.properties"
)

write_config() {
    cat >"$KAFKA_CONFIG" <<EOF
# Written by deploy/local/kafka.sh at each fresh start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_STATE/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
EOF
}

# A random Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 characters).
# One that starts with "-" would be read as an option by StorageTool's argument parser: drawn again.
random_cluster_id() {
    local id="-"
    while [[ "$id" == -* ]]; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | cut -c 1-22)"
    done
    echo "$id"
}

# metadata_answers: a metadata request to the PLAINTEXT listener gets an answer naming our broker.
metadata_answers() {
    local python="$REPO_DIR/.venv/bin/python"
    if [[ -x "$python" ]] && "$python" -c 'import confluent_kafka' 2>/dev/null; then
        "$python" - "$LOCAL_KAFKA_BOOTSTRAP" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient

metadata = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=3)
sys.exit(0 if 1 in metadata.brokers else 1)
EOF
    else
        java "${tool_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.admin.BrokerApiVersionsCommand --bootstrap-server "$LOCAL_KAFKA_BOOTSTRAP" | grep -q "id: 1"
    fi
}

up() {
    if external DRIFTLINE_KAFKA_BOOTSTRAP "$LOCAL_KAFKA_BOOTSTRAP"; then
        log "kafka: using DRIFTLINE_KAFKA_BOOTSTRAP=$DRIFTLINE_KAFKA_BOOTSTRAP (not started here)"
        return 0
    fi
    if pid_alive "$KAFKA_PID" "$KAFKA_PATTERN"; then
        log "kafka: already running (pid $(<"$KAFKA_PID"))"
    else
        fetch_jars
        require_free_port kafka "$KAFKA_PORT"
        require_free_port "kafka controller" "$KAFKA_CONTROLLER_PORT"
        rm -rf "$KAFKA_STATE/data"
        mkdir -p "$KAFKA_STATE/data" "$KAFKA_STATE/logs"
        write_config
        local cluster_id
        cluster_id="$(random_cluster_id)"
        log "kafka: formatting a fresh data directory (cluster id $cluster_id)"
        java "${tool_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
            --cluster-id="$cluster_id" --config "$KAFKA_CONFIG" >>"$KAFKA_LOG" 2>&1 \
            || { tail -n 20 "$KAFKA_LOG" >&2; die "kafka: storage format failed"; }
        log "kafka: starting $KAFKA_VERSION on $LOCAL_KAFKA_BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)"
        start_daemon "$KAFKA_PID" "$KAFKA_LOG" \
            java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG"
    fi
    wait_until 120 kafka "$KAFKA_PID" "$KAFKA_PATTERN" "$KAFKA_STATE/logs" metadata_answers
    log "kafka: ready on $LOCAL_KAFKA_BOOTSTRAP"
}

# kill: SIGKILL the broker (no controlled shutdown), as a crash would; its data directory stays.
kill_broker() {
    if ! pid_alive "$KAFKA_PID" "$KAFKA_PATTERN"; then
        log "kafka: not running"
        return 0
    fi
    local pid
    pid="$(<"$KAFKA_PID")"
    log "kafka: SIGKILL (pid $pid)"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

# start: start the broker on its existing data directory (after `kill` or `down`), without formatting.
start_existing() {
    if pid_alive "$KAFKA_PID" "$KAFKA_PATTERN"; then
        log "kafka: already running (pid $(<"$KAFKA_PID"))"
    else
        [[ -f "$KAFKA_CONFIG" && -d "$KAFKA_STATE/data" ]] || die "kafka: no existing data directory to start on (use up)"
        require_free_port kafka "$KAFKA_PORT"
        require_free_port "kafka controller" "$KAFKA_CONTROLLER_PORT"
        log "kafka: starting $KAFKA_VERSION on its existing data directory"
        start_daemon "$KAFKA_PID" "$KAFKA_LOG" \
            java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG"
    fi
    wait_until 120 kafka "$KAFKA_PID" "$KAFKA_PATTERN" "$KAFKA_STATE/logs" metadata_answers
    log "kafka: ready on $LOCAL_KAFKA_BOOTSTRAP"
}

down() {
    # A controlled shutdown of a single node takes a few seconds; 30 s before SIGKILL.
    daemon_down kafka DRIFTLINE_KAFKA_BOOTSTRAP "$LOCAL_KAFKA_BOOTSTRAP" "$KAFKA_PID" "$KAFKA_PATTERN" 30
}

status() {
    daemon_status kafka DRIFTLINE_KAFKA_BOOTSTRAP "$LOCAL_KAFKA_BOOTSTRAP" "$KAFKA_PID" "$KAFKA_PATTERN" \
        "logs $KAFKA_STATE/logs"
}

env_lines() {
    printf 'export DRIFTLINE_KAFKA_BOOTSTRAP=%q\n' "${DRIFTLINE_KAFKA_BOOTSTRAP:-$LOCAL_KAFKA_BOOTSTRAP}"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) env_lines ;;
    fetch) fetch_jars ;;
    kill) kill_broker ;;
    start) start_existing ;;
    *) echo "usage: $0 up|down|status|env|fetch|kill|start" >&2; exit 2 ;;
esac
