#!/usr/bin/env bash
# A Confluent-compatible Schema Registry on 127.0.0.1: Apicurio Registry 2.4.2.Final with in-memory
# storage, built once with Maven from Maven Central and run with Java — no Docker, no tarball.
# Usage: registry.sh up|down|status|env|fetch
#
#   http://127.0.0.1:18081/apis/ccompat/v7   the Confluent Schema Registry API (DRIFTLINE_SCHEMA_REGISTRY_URL;
#                                            the port shifted by DRIFTLINE_PORT_OFFSET, like the others)
#   http://127.0.0.1:18081/health/ready      readiness
#
# Build: registry/pom.xml (see its comment for why it is a build and what it mends) into
# $DRIFTLINE_CACHE_DIR/apicurio-registry-2.4.2.Final/quarkus-app, with Maven's repository in
# $DRIFTLINE_CACHE_DIR/m2; rebuilt only when the Maven project changes.
# State: $DRIFTLINE_SERVICES_DIR/registry/{logs,tmp,registry.pid}. Storage is in memory: every `up`
# from stopped starts an empty registry, whose global compatibility is set to BACKWARD (Apicurio's
# default is NONE); `up` while running keeps the running registry and its schemas.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REGISTRY_VERSION=2.4.2.Final
REGISTRY_HOME="$CACHE_DIR/apicurio-registry-$REGISTRY_VERSION"
REGISTRY_JAR="$REGISTRY_HOME/quarkus-app/quarkus-run.jar"
REGISTRY_STATE="$STATE_DIR/registry"
REGISTRY_PID="$REGISTRY_STATE/registry.pid"
REGISTRY_LOG="$REGISTRY_STATE/logs/registry.log"
# What identifies our registry's command line: the jar is shared by every checkout, the state directory is
# not (a system property naming it, which the registry ignores; the pattern's trailing space keeps one
# directory's name from matching another that merely starts with it).
REGISTRY_MARK="-Ddriftline.registry.state=$REGISTRY_STATE"
REGISTRY_PATTERN="$REGISTRY_MARK "
REGISTRY_BASE_URL="http://127.0.0.1:$SCHEMA_REGISTRY_PORT"

# The Quarkus build's own flag: the app jar's application.properties asks for a legacy jar under the
# prod profile (%prod.quarkus.package.type, which outranks a plain quarkus.package.type); a fast jar
# starts faster (measured here, three runs each: 5.7–8.1 s to ready against 7.2–10.9 s) and holds less
# memory (about 180 MB resident against 205).
MAVEN_BUILD_FLAGS=(-D%prod.quarkus.package.type=fast-jar)

# What the build depends on: the Maven project and the flags above. A change rebuilds.
build_id() {
    {
        cat "$LOCAL_DIR/registry/pom.xml" "$LOCAL_DIR/registry/config-index-deployment/pom.xml"
        printf '%s\n' "${MAVEN_BUILD_FLAGS[@]}"
    } | sha256sum | cut -c 1-16
}

fetch_app() {
    local wanted
    wanted="$(build_id)"
    [[ -f "$REGISTRY_HOME/.complete" && "$(<"$REGISTRY_HOME/.complete")" == "$wanted" ]] && return 0
    mkdir -p "$CACHE_DIR"
    # Checkouts (and CI runs) that share the cache but not a state directory build one at a time.
    exec 8>"$CACHE_DIR/.apicurio-registry.lock"
    flock -w 1800 8 || die "registry: another build holds $CACHE_DIR/.apicurio-registry.lock"
    if [[ -f "$REGISTRY_HOME/.complete" && "$(<"$REGISTRY_HOME/.complete")" == "$wanted" ]]; then
        exec 8>&-
        return 0
    fi
    log "registry: building Apicurio Registry $REGISTRY_VERSION with Maven (the first build downloads its dependencies: about a minute)"
    # Built in a staging directory, out of the repository, moved into place when complete: an
    # interrupted build leaves nothing half-made behind.
    local staging="$REGISTRY_HOME.partial" started=$SECONDS
    rm -rf "$staging"
    mkdir -p "$staging"
    cp -R "$LOCAL_DIR/registry" "$staging/project"
    local maven_log="$CACHE_DIR/apicurio-registry-$REGISTRY_VERSION.mvn.log"
    local maven=(mvn -B -Dstyle.color=never -Dmaven.repo.local="$CACHE_DIR/m2")
    {
        "${maven[@]}" -f "$staging/project/config-index-deployment/pom.xml" install \
            && "${maven[@]}" -f "$staging/project/pom.xml" "${MAVEN_BUILD_FLAGS[@]}" package
    } >"$maven_log" 2>&1 || { tail -n 40 "$maven_log" >&2; die "registry: the Maven build failed (log: $maven_log)"; }
    [[ -f "$staging/project/target/quarkus-app/quarkus-run.jar" ]] || die "registry: the build made no quarkus-app/quarkus-run.jar (log: $maven_log)"
    mv "$staging/project/target/quarkus-app" "$staging/quarkus-app"
    rm -rf "$staging/project"
    echo "$wanted" >"$staging/.complete"
    rm -rf "$REGISTRY_HOME"
    mv "$staging" "$REGISTRY_HOME"
    exec 8>&-
    log "registry: built in $((SECONDS - started))s ($REGISTRY_HOME)"
}

# ready: Quarkus says ready and the Confluent API answers.
ready() {
    http_ok "$REGISTRY_BASE_URL/health/ready" && http_ok "$LOCAL_SCHEMA_REGISTRY_URL/config"
}

# set_backward: the global compatibility level BACKWARD (a new schema of a subject must read the data
# written with the previous one), as a Confluent registry has by default.
set_backward() {
    local answer
    answer="$(curl -s --max-time 5 -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
        --data '{"compatibility": "BACKWARD"}' "$LOCAL_SCHEMA_REGISTRY_URL/config")"
    [[ "$(curl -s --max-time 5 "$LOCAL_SCHEMA_REGISTRY_URL/config")" == *'"BACKWARD"'* ]] \
        || die "registry: could not set the global compatibility to BACKWARD (answer: $answer)"
}

java_opts=(
    # A small test service: one GC thread, a small heap, C1 only (ready in 4.2–4.8 s against 6.2–8.7 s
    # with the default JIT, three runs each on the loaded 2-core machine; about 157 MB resident against 179).
    -XX:+UseSerialGC -Xmx128m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    -Djava.io.tmpdir="$REGISTRY_STATE/tmp"
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$SCHEMA_REGISTRY_PORT"
    "$REGISTRY_MARK"
)

up() {
    if external DRIFTLINE_SCHEMA_REGISTRY_URL "$LOCAL_SCHEMA_REGISTRY_URL"; then
        log "registry: using DRIFTLINE_SCHEMA_REGISTRY_URL=$DRIFTLINE_SCHEMA_REGISTRY_URL (not started here)"
        return 0
    fi
    local fresh=0
    if pid_alive "$REGISTRY_PID" "$REGISTRY_PATTERN"; then
        log "registry: already running (pid $(<"$REGISTRY_PID"))"
    else
        fetch_app
        require_free_port registry "$SCHEMA_REGISTRY_PORT"
        rm -rf "$REGISTRY_STATE/tmp"
        mkdir -p "$REGISTRY_STATE/logs" "$REGISTRY_STATE/tmp"
        log "registry: starting Apicurio Registry $REGISTRY_VERSION (in memory) on $REGISTRY_BASE_URL"
        start_daemon "$REGISTRY_PID" "$REGISTRY_LOG" java "${java_opts[@]}" -jar "$REGISTRY_JAR"
        fresh=1
    fi
    wait_until 120 registry "$REGISTRY_PID" "$REGISTRY_PATTERN" "$REGISTRY_LOG" ready
    ((fresh)) && set_backward
    log "registry: ready on $LOCAL_SCHEMA_REGISTRY_URL (compatibility $(curl -s --max-time 5 "$LOCAL_SCHEMA_REGISTRY_URL/config"))"
}

down() {
    daemon_down registry DRIFTLINE_SCHEMA_REGISTRY_URL "$LOCAL_SCHEMA_REGISTRY_URL" "$REGISTRY_PID" "$REGISTRY_PATTERN" 20
}

status() {
    daemon_status registry DRIFTLINE_SCHEMA_REGISTRY_URL "$LOCAL_SCHEMA_REGISTRY_URL" "$REGISTRY_PID" "$REGISTRY_PATTERN" \
        "log $REGISTRY_LOG"
}

env_lines() {
    printf 'export DRIFTLINE_SCHEMA_REGISTRY_URL=%q\n' "${DRIFTLINE_SCHEMA_REGISTRY_URL:-$LOCAL_SCHEMA_REGISTRY_URL}"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) env_lines ;;
    fetch) fetch_app ;;
    *) echo "usage: $0 up|down|status|env|fetch" >&2; exit 2 ;;
esac
