#!/usr/bin/env bash
# Apache Kafka 3.9.1 in KRaft mode (one node, broker + controller) on 127.0.0.1, run with Java
# from its Maven Central jars — no Docker, no tarball. Usage: kafka.sh up|down|status|env|kill|start
#
#   PLAINTEXT      127.0.0.1:19092   (what clients use: DRIFTLINE_KAFKA_BOOTSTRAP)
#   CONTROLLER     127.0.0.1:19093
#   SASL_PLAINTEXT 127.0.0.1:19095   SCRAM-SHA-512 / -256, user `driftline` (DRIFTLINE_KAFKA_SCRAM_BOOTSTRAP)
#   SASL_SSL       127.0.0.1:19096   the same over TLS (DRIFTLINE_KAFKA_TLS_BOOTSTRAP)
#   SSL            127.0.0.1:19097   TLS that requires a client certificate (DRIFTLINE_KAFKA_MTLS_BOOTSTRAP)
#   The two TLS listeners' certificate (and the second's trusted CA) are a self-signed placeholder until a
#   test installs its own CA's through the dynamic broker config (see README.md here).
#
# The SCRAM password is drawn at every fresh start and kept in $DRIFTLINE_SERVICES_DIR/kafka/secrets/scram-password
# (mode 0600); `env` exports that file's path (DRIFTLINE_KAFKA_SCRAM_PASSWORD_FILE), never the password, and the
# password is in no process's argument list (the storage tool reads it from a Java argument file).
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
# The SCRAM user of the SASL listeners, its password (drawn at each fresh start), the TLS listener's placeholder.
KAFKA_SECRETS="$KAFKA_STATE/secrets"
KAFKA_SCRAM_USER=driftline
KAFKA_SCRAM_PASSWORD_FILE="$KAFKA_SECRETS/scram-password"
KAFKA_PLACEHOLDER_PEM="$KAFKA_SECRETS/placeholder-keystore.pem"

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
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SCRAM_PORT,SASL_SSL://127.0.0.1:$KAFKA_TLS_PORT,SSL://127.0.0.1:$KAFKA_MTLS_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SCRAM_PORT,SASL_SSL://127.0.0.1:$KAFKA_TLS_PORT,SSL://127.0.0.1:$KAFKA_MTLS_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
# SCRAM on the two SASL listeners; the credentials are in the cluster's metadata (StorageTool format --add-scram).
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# TLS: a listener needs a keystore to start (and one that checks client certificates, a truststore); these are
# a self-signed placeholder that nobody trusts. A test installs its own CA's through the dynamic broker config
# (listener.name.<listener>.ssl.keystore.* and .ssl.truststore.*), which may change the certificate's names.
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_PLACEHOLDER_PEM
listener.name.sasl_ssl.ssl.allow.dn.changes=true
listener.name.sasl_ssl.ssl.allow.san.changes=true
listener.name.ssl.ssl.client.auth=required
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$KAFKA_PLACEHOLDER_PEM
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$KAFKA_SECRETS/placeholder.crt
listener.name.ssl.ssl.allow.dn.changes=true
listener.name.ssl.ssl.allow.san.changes=true
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

# new_secrets: a fresh SCRAM password (a file of mode 0600) and the TLS listener's placeholder certificate.
# The password goes from /dev/urandom through pipes into a shell variable and bash's own printf: no
# process is given it as an argument.
new_secrets() {
    rm -rf "$KAFKA_SECRETS"
    (umask 077 && mkdir -p "$KAFKA_SECRETS")
    local password
    password="$(head -c 24 /dev/urandom | base64 | tr -d '+/=\n')"
    (umask 077 && printf '%s' "$password" >"$KAFKA_SCRAM_PASSWORD_FILE")
    # An unencrypted key (PEM keystores need no password): the placeholder protects nothing.
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=driftline local placeholder" -keyout "$KAFKA_PLACEHOLDER_PEM" -out "$KAFKA_SECRETS/placeholder.crt" \
        >>"$KAFKA_LOG" 2>&1 && cat "$KAFKA_SECRETS/placeholder.crt" >>"$KAFKA_PLACEHOLDER_PEM") \
        || die "kafka: openssl could not make the TLS listener's placeholder certificate"
}

# format_storage CLUSTER_ID: a fresh data directory with the SCRAM user's credentials in its metadata. The
# storage tool's arguments, password included, are in a Java argument file (expanded by the java
# launcher itself: `ps` shows `@file`), deleted once the tool has run.
format_storage() {
    local password argfile="$KAFKA_SECRETS/format.args"
    password="$(<"$KAFKA_SCRAM_PASSWORD_FILE")"
    (umask 077 && printf '%s\n' kafka.tools.StorageTool format "--cluster-id=$1" --config "\"$KAFKA_CONFIG\"" \
        --add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$password]" \
        --add-scram "SCRAM-SHA-256=[name=$KAFKA_SCRAM_USER,password=$password]" >"$argfile")
    local status=0
    java "${tool_opts[@]}" -cp "$KAFKA_LIBS/*" "@$argfile" >>"$KAFKA_LOG" 2>&1 || status=$?
    rm -f "$argfile"
    return "$status"
}

# metadata_answers: a metadata request to the PLAINTEXT listener gets an answer naming our broker (and, with
# the project's confluent_kafka, one to the SCRAM listener with the user's credentials too).
metadata_answers() {
    local python="$REPO_DIR/.venv/bin/python"
    if [[ -x "$python" ]] && "$python" -c 'import confluent_kafka' 2>/dev/null; then
        "$python" - "$LOCAL_KAFKA_BOOTSTRAP" "$LOCAL_KAFKA_SCRAM_BOOTSTRAP" "$KAFKA_SCRAM_USER" "$KAFKA_SCRAM_PASSWORD_FILE" <<'EOF'
import sys
from pathlib import Path

from confluent_kafka.admin import AdminClient

plaintext, scram, user, password_file = sys.argv[1:]
metadata = AdminClient({"bootstrap.servers": plaintext}).list_topics(timeout=3)
if 1 not in metadata.brokers:
    sys.exit(1)
secured = AdminClient({"bootstrap.servers": scram, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                       "sasl.username": user, "sasl.password": Path(password_file).read_text()})
sys.exit(0 if 1 in secured.list_topics(timeout=3).brokers else 1)
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
        require_free_port "kafka scram" "$KAFKA_SCRAM_PORT"
        require_free_port "kafka tls" "$KAFKA_TLS_PORT"
        require_free_port "kafka mtls" "$KAFKA_MTLS_PORT"
        rm -rf "$KAFKA_STATE/data"
        mkdir -p "$KAFKA_STATE/data" "$KAFKA_STATE/logs"
        new_secrets
        write_config
        local cluster_id
        cluster_id="$(random_cluster_id)"
        log "kafka: formatting a fresh data directory (cluster id $cluster_id, SCRAM user $KAFKA_SCRAM_USER)"
        format_storage "$cluster_id" || { tail -n 20 "$KAFKA_LOG" >&2; die "kafka: storage format failed"; }
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
        require_free_port "kafka scram" "$KAFKA_SCRAM_PORT"
        require_free_port "kafka tls" "$KAFKA_TLS_PORT"
        require_free_port "kafka mtls" "$KAFKA_MTLS_PORT"
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

# env: the broker's address; for our own broker also its SCRAM and TLS listeners, the SCRAM user and the
# path of its password file (not the password: `eval` puts these lines in a shell's environment).
env_lines() {
    printf 'export DRIFTLINE_KAFKA_BOOTSTRAP=%q\n' "${DRIFTLINE_KAFKA_BOOTSTRAP:-$LOCAL_KAFKA_BOOTSTRAP}"
    if ! external DRIFTLINE_KAFKA_BOOTSTRAP "$LOCAL_KAFKA_BOOTSTRAP"; then
        printf 'export DRIFTLINE_KAFKA_SCRAM_BOOTSTRAP=%q\n' "$LOCAL_KAFKA_SCRAM_BOOTSTRAP"
        printf 'export DRIFTLINE_KAFKA_TLS_BOOTSTRAP=%q\n' "$LOCAL_KAFKA_TLS_BOOTSTRAP"
        printf 'export DRIFTLINE_KAFKA_MTLS_BOOTSTRAP=%q\n' "$LOCAL_KAFKA_MTLS_BOOTSTRAP"
        printf 'export DRIFTLINE_KAFKA_SCRAM_USERNAME=%q\n' "$KAFKA_SCRAM_USER"
        printf 'export DRIFTLINE_KAFKA_SCRAM_PASSWORD_FILE=%q\n' "$KAFKA_SCRAM_PASSWORD_FILE"
    fi
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
