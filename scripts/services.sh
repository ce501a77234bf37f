#!/usr/bin/env bash
# The brokers the tests talk to, on a machine that starts none:
#   bash scripts/services.sh up      install what is missing, start what is down, wait until ready
#   bash scripts/services.sh status  one line per service, exit 0 only when all six are up
#   bash scripts/services.sh down    stop what `up` started (by the pid it recorded), nothing else
# Addresses (loopback, the usual ports): RabbitMQ 5672 (guest/guest), Redis 6379 (no
# persistence), NATS + JetStream 4222 (monitoring 8222), PostgreSQL 5432 (database `test`,
# trust on loopback), Apache Kafka 4.x KRaft 9092 (controller 9093), Apicurio Registry 8081
# (Confluent-compatible API at /apis/ccompat/v7). Kafka and Apicurio come from Maven Central
# through scripts/services/pom.xml into ~/.cache/eventwire (downloaded once).
# Idempotent: running `up` again starts only what is down; a service already answering on its
# port (started by anyone) is left alone and not recorded, so `down` never stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${EVENTWIRE_CACHE:-$HOME/.cache/eventwire}
run=$cache/run          # pid files and logs of what `up` started
data=$cache/data        # broker data (Kafka log dirs, JetStream store)
dist=$cache/services    # the Maven Central downloads
pom=$here/services/pom.xml
pom_prop() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$pom" | head -1; }
kafka_version=$(pom_prop kafka.version)
apicurio_version=$(pom_prop apicurio.version)
kafka_home=$dist/kafka-$kafka_version
apicurio_home=$dist/apicurio-$apicurio_version
ready_timeout=${EVENTWIRE_SERVICES_TIMEOUT:-180}
SERVICES=(rabbitmq redis nats postgresql kafka apicurio)

log() { echo "services: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

address() {
  case $1 in
    rabbitmq) echo "amqp://guest:***@127.0.0.1:5672/" ;;
    redis) echo "redis://127.0.0.1:6379/0" ;;
    nats) echo "nats://127.0.0.1:4222" ;;
    postgresql) echo "postgresql://postgres@127.0.0.1:5432/test" ;;
    kafka) echo "kafka://127.0.0.1:9092" ;;
    apicurio) echo "http://127.0.0.1:8081/apis/ccompat/v7" ;;
  esac
}

logfile() {
  # RabbitMQ drops to its own user and writes where that user may: Debian's log folder.
  if [ "$1" = rabbitmq ]; then echo "/var/log/rabbitmq/rabbit@$(hostname -s).log"; else echo "$run/$1.log"; fi
}

# Real readiness, not an open port: each probe asks the service to do something.
ready() {
  case $1 in
    rabbitmq) port_open 5672 && rabbitmq-diagnostics -q check_running >/dev/null 2>&1 ;;
    redis) [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] ;;
    nats) curl -fsS -m 2 "http://127.0.0.1:8222/healthz?js-enabled-only=true" >/dev/null 2>&1 ;;
    postgresql) [ "$(psql -h 127.0.0.1 -p 5432 -U postgres -d test -tAc "select 1" 2>/dev/null)" = 1 ] ;;
    kafka) python3 "$root/src/eventwire/testing/kafka_probe.py" 127.0.0.1 9092 ;;
    apicurio) curl -fsS -m 2 http://127.0.0.1:8081/apis/ccompat/v7/subjects >/dev/null 2>&1 ;;
  esac
}

wait_ready() {
  local name=$1 deadline=$((SECONDS + ready_timeout))
  until ready "$name"; do
    if [ $SECONDS -ge $deadline ]; then
      log "$name did not become ready at $(address "$name") within ${ready_timeout} s; see $(logfile "$name")"
      [ -f "$(logfile "$name")" ] && tail -n 20 "$(logfile "$name")" | sed 's/^/  | /' >&2
      return 1
    fi
    local pidfile=$run/$name.pid
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "$name exited while starting; see $(logfile "$name")"
      tail -n 20 "$(logfile "$name")" | sed 's/^/  | /' >&2
      return 1
    fi
    sleep 0.5
  done
}

# --- install ----------------------------------------------------------------------------------

apt_updated=0
need_pkg() { # binary package
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/lib/postgresql/15/bin/$1" ] && return 0
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "installing $2"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

install_debian() {
  need_pkg rabbitmq-server rabbitmq-server
  need_pkg redis-server redis-server
  need_pkg nats-server nats-server
  need_pkg pg_ctlcluster postgresql
  need_pkg docker-compose docker-compose
  need_pkg prometheus prometheus
  need_pkg curl curl
  need_pkg tmux tmux  # the monitor test drives `eventwire monitor` in a real terminal
}

install_maven() {
  # A stamp per pom content: a version bump downloads again, a second run downloads nothing.
  local stamp
  stamp=$dist/.stamp-$(sha256sum "$pom" | cut -c1-16)
  [ -f "$stamp" ] && [ -d "$kafka_home/libs" ] && [ -f "$apicurio_home/quarkus-run.jar" ] && return 0
  log "fetching Kafka $kafka_version and Apicurio Registry $apicurio_version from Maven Central"
  rm -rf "$kafka_home" "$apicurio_home" "$root/scripts/services/target"
  mkdir -p "$dist"
  if ! mvn -q -B -f "$pom" package -Dservices.dir="$dist" >"$dist/mvn.log" 2>&1; then
    log "Maven could not fetch the Kafka/Apicurio jars; see $dist/mvn.log"
    tail -n 20 "$dist/mvn.log" | sed 's/^/  | /' >&2
    return 1
  fi
  rm -rf "$root/scripts/services/target"
  touch "$stamp"
}

# --- start ------------------------------------------------------------------------------------

# Runs "$@" detached in its own session, output to the service's log, its pid recorded.
spawn() {
  local name=$1
  shift
  setsid nohup "$@" </dev/null >>"$(logfile "$name")" 2>&1 &
  echo $! >"$run/$name.pid"
}

start_rabbitmq() {
  # -detached forks; the Erlang VM's own pid is read back once it runs and recorded for `down`.
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >>"$run/rabbitmq-start.log" 2>&1
  local deadline=$((SECONDS + ready_timeout))
  until rabbitmqctl -q eval 'list_to_integer(os:getpid()).' >"$run/rabbitmq.pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then rm -f "$run/rabbitmq.pid"; return 0; fi
    sleep 1
  done
}

start_redis() {
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$data" --pidfile "$run/redis.pid" --logfile "$(logfile redis)"
}

start_nats() {
  mkdir -p "$data/nats"
  spawn nats nats-server -a 127.0.0.1 -p 4222 -m 8222 -js -sd "$data/nats"
}

start_postgresql() {
  local version=15 cluster=main conf=/etc/postgresql/15/main
  if [ ! -d "$conf" ]; then
    as_root pg_createcluster "$version" "$cluster" -p 5432 >/dev/null
  fi
  # Trust on loopback only, first in the file so it wins; the tests connect as postgres.
  if ! grep -q "eventwire-services" "$conf/pg_hba.conf"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust # eventwire-services\nhost all all ::1/128 trust # eventwire-services' \
      "$conf/pg_hba.conf"
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    as_root pg_ctlcluster "$version" "$cluster" start -- -o "-c listen_addresses=127.0.0.1 -c port=5432" \
      >>"$(logfile postgresql)" 2>&1
  fi
  head -1 "/var/run/postgresql/$version-$cluster.pid" >"$run/postgresql.pid"
  echo "$version $cluster" >"$run/postgresql.cluster"
}

# Creates the `test` database once PostgreSQL answers (readiness waits for it by name).
prepare_postgresql() {
  local deadline=$((SECONDS + ready_timeout))
  until pg_isready -q -h 127.0.0.1 -p 5432; do
    [ $SECONDS -ge $deadline ] && return 0
    sleep 0.5
  done
  if [ "$(psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='test'")" != 1 ]; then
    psql -q -h 127.0.0.1 -U postgres -c "create database test" >/dev/null
  fi
}

kafka_config() {
  cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=PLAINTEXT://127.0.0.1:9092
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data/kafka
# One broker: internal topics cannot be replicated further, and a handful of partitions
# keeps the first group and the first transaction quick to set up on two cores.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Clients must create their topics (eventwire does, with explicit partitions and replication);
# auto-creation off catches any code path that would silently get broker defaults.
auto.create.topics.enable=false
num.partitions=1
num.network.threads=2
num.io.threads=4
EOF
}

start_kafka() {
  [ -d "$kafka_home/libs" ] || { log "Kafka jars missing in $kafka_home"; return 1; }
  mkdir -p "$data/kafka"
  kafka_config >"$run/kafka.properties"
  local java=(java -Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=info
    -cp "$kafka_home/libs/*")
  if [ ! -f "$data/kafka/meta.properties" ]; then
    local cluster_id
    cluster_id=$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
    "${java[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$run/kafka.properties" \
      >>"$(logfile kafka)" 2>&1
  fi
  spawn kafka "${java[@]}" kafka.Kafka "$run/kafka.properties"
}

# Apicurio Registry 3.3 is built for Java 21; Kafka runs on the default Java 17.
java21() {
  local candidate
  for candidate in "${APICURIO_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" java /usr/lib/jvm/*/bin/java; do
    [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 || continue
    local major
    major=$("$candidate" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    if [ "${major%%.*}" -ge 21 ] 2>/dev/null; then echo "$candidate"; return 0; fi
  done
  return 1
}

start_apicurio() {
  [ -f "$apicurio_home/quarkus-run.jar" ] || { log "Apicurio missing in $apicurio_home"; return 1; }
  local java
  java=$(java21) || { log "Apicurio Registry needs Java 21 or newer: set APICURIO_JAVA to its java binary"; return 1; }
  # In-memory storage (the default): the registry is empty at every start, as tests expect.
  spawn apicurio "$java" -Xms128m -Xmx512m -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port=8081 \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port=8091 -Dapicurio.ccompat.max-subjects=100000 -jar "$apicurio_home/quarkus-run.jar"
}

up() {
  mkdir -p "$run" "$data"
  install_debian
  install_maven
  local name started=()
  for name in "${SERVICES[@]}"; do
    if ready "$name"; then continue; fi
    log "starting $name"
    "start_$name"
    started+=("$name")
  done
  if [[ " ${started[*]} " == *" postgresql "* ]]; then prepare_postgresql; fi
  local failed=0
  for name in "${started[@]}"; do
    wait_ready "$name" || failed=1
  done
  [ "$failed" = 0 ] || exit 1
  status
}

status() {
  local name all=0
  for name in "${SERVICES[@]}"; do
    if ready "$name"; then
      echo "$name up $(address "$name")"
    else
      echo "$name down $(address "$name")"
      all=1
    fi
  done
  return $all
}

stop_pid() { # name pid: TERM, then KILL after 30 s
  local name=$1 pid=$2
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  log "$name (pid $pid) ignored SIGTERM for 30 s: killing it"
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  local name pidfile
  for name in "${SERVICES[@]}"; do
    pidfile=$run/$name.pid
    [ -f "$pidfile" ] || continue
    log "stopping $name"
    case $name in
      rabbitmq) rabbitmqctl -q stop >/dev/null 2>&1 || true ;;
      postgresql) read -r version cluster <"$run/postgresql.cluster"
        as_root pg_ctlcluster "$version" "$cluster" stop >/dev/null 2>&1 || true ;;
    esac
    stop_pid "$name" "$(cat "$pidfile")"
    rm -f "$pidfile" "$run/$name.cluster"
  done
}

case ${1:-} in
  up) up ;;
  status) status ;;
  down) down ;;
  *) echo "usage: bash scripts/services.sh up|status|down" >&2; exit 2 ;;
esac
