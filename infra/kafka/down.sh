#!/usr/bin/env bash
# Stops the broker started by up.sh (data is kept in infra/kafka/.cache/data; `--wipe` removes it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${KAFKA_STATE_DIR:-$here/.cache}"
pidfile="$state/run/kafka.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  pid="$(cat "$pidfile")"
  kill "$pid"
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  echo "kafka: stopped"
else
  echo "kafka: not running"
fi
rm -f "$pidfile"
if [ "${1:-}" = "--wipe" ]; then rm -rf "$state/data"; echo "kafka: data removed"; fi
