#!/usr/bin/env bash
# Starts a single-node Apache Kafka broker (KRaft) on 127.0.0.1:9092 for development and CI.
# Jars come from Maven Central through pom.xml; data lives in infra/kafka/.cache (ignored).
# Returns once the broker answers a metadata request. Idempotent: a running broker is reused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/.cache"
# KAFKA_STATE_DIR gives a broker its own data and run folder (a second broker beside the default one).
state="${KAFKA_STATE_DIR:-$cache}"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
mkdir -p "$state/run"

# Command-line tools log nothing; the broker logs to .cache/run/kafka.log.
printf 'log4j.rootLogger=OFF, null\nlog4j.appender.null=org.apache.log4j.varia.NullAppender\n' > "$state/run/log4j-tools.properties"
tool() { java -Dlog4j.configuration="file:$state/run/log4j-tools.properties" -cp "$cache/lib/*" "$@"; }

ready() {
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list >/dev/null 2>&1
}

if [ -f "$state/run/kafka.pid" ] && kill -0 "$(cat "$state/run/kafka.pid")" 2>/dev/null && ready; then
  echo "kafka: already running on 127.0.0.1:$port"
  exit 0
fi

if [ ! -f "$cache/lib/kafka_2.13-3.9.1.jar" ]; then
  echo "kafka: resolving broker jars from Maven Central"
  mvn -q -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$cache/lib" -DincludeScope=runtime
fi

cat > "$state/run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$state/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS

cat > "$state/run/log4j.properties" <<'PROPS'
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS

if [ ! -f "$state/data/meta.properties" ]; then
  cluster_id="$(tool kafka.tools.StorageTool random-uuid)"
  tool kafka.tools.StorageTool format -t "$cluster_id" -c "$state/run/server.properties" >/dev/null
fi

nohup java -Xms256m -Xmx512m \
  -Dlog4j.configuration="file:$state/run/log4j.properties" -Dlog4j.appender.file.File="$state/run/kafka.log" \
  -cp "$cache/lib/*" kafka.Kafka "$state/run/server.properties" >"$state/run/stdout.log" 2>&1 &
echo $! > "$state/run/kafka.pid"

for _ in $(seq 1 60); do
  if ready; then
    echo "kafka: ready on 127.0.0.1:$port (pid $(cat "$state/run/kafka.pid"))"
    exit 0
  fi
  if ! kill -0 "$(cat "$state/run/kafka.pid")" 2>/dev/null; then
    echo "kafka: broker exited; see $state/run/stdout.log" >&2
    tail -n 20 "$state/run/stdout.log" >&2
    exit 1
  fi
  sleep 1
done
echo "kafka: not ready after 60 s; see $state/run/stdout.log" >&2
exit 1
