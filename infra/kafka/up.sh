#!/usr/bin/env bash
# Starts a single-node Apache Kafka broker (KRaft) on 127.0.0.1:9092 for development and CI.
# Jars come from Maven Central through pom.xml; data lives in infra/kafka/.cache (ignored).
# Returns once the broker answers a metadata request. Idempotent: a running broker is reused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/.cache"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
mkdir -p "$cache/run"

# Command-line tools log nothing; the broker logs to .cache/run/kafka.log.
printf 'log4j.rootLogger=OFF, null\nlog4j.appender.null=org.apache.log4j.varia.NullAppender\n' > "$cache/run/log4j-tools.properties"
tool() { java -Dlog4j.configuration="file:$cache/run/log4j-tools.properties" -cp "$cache/lib/*" "$@"; }

ready() {
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list >/dev/null 2>&1
}

if [ -f "$cache/run/kafka.pid" ] && kill -0 "$(cat "$cache/run/kafka.pid")" 2>/dev/null && ready; then
  echo "kafka: already running on 127.0.0.1:$port"
  exit 0
fi

if [ ! -f "$cache/lib/kafka_2.13-3.9.1.jar" ]; then
  echo "kafka: resolving broker jars from Maven Central"
  mvn -q -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$cache/lib" -DincludeScope=runtime
fi

cat > "$cache/run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$cache/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS

cat > "$cache/run/log4j.properties" <<'PROPS'
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS

if [ ! -f "$cache/data/meta.properties" ]; then
  cluster_id="$(tool kafka.tools.StorageTool random-uuid)"
  tool kafka.tools.StorageTool format -t "$cluster_id" -c "$cache/run/server.properties" >/dev/null
fi

nohup java -Xms256m -Xmx512m \
  -Dlog4j.configuration="file:$cache/run/log4j.properties" -Dlog4j.appender.file.File="$cache/run/kafka.log" \
  -cp "$cache/lib/*" kafka.Kafka "$cache/run/server.properties" >"$cache/run/stdout.log" 2>&1 &
echo $! > "$cache/run/kafka.pid"

for _ in $(seq 1 60); do
  if ready; then
    echo "kafka: ready on 127.0.0.1:$port (pid $(cat "$cache/run/kafka.pid"))"
    exit 0
  fi
  if ! kill -0 "$(cat "$cache/run/kafka.pid")" 2>/dev/null; then
    echo "kafka: broker exited; see $cache/run/stdout.log" >&2
    tail -n 20 "$cache/run/stdout.log" >&2
    exit 1
  fi
  sleep 1
done
echo "kafka: not ready after 60 s; see $cache/run/stdout.log" >&2
exit 1
