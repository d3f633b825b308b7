import { createServer, type Server } from 'node:http'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { type SubscribeOptions } from './bus/bus.ts'
import { type SinkStats } from './warehouse-sink.ts'

/**
 * Prometheus metrics of a pipeline process: rows by outcome, batches, the
 * last insert's duration, and the consumer lag per topic-partition.
 */
export class SinkMetrics {
  readonly registry = new Registry()
  private readonly rows: Counter
  private readonly batches: Counter
  private readonly insertSeconds: Gauge
  private readonly lag: Gauge
  private readonly committed: Gauge
  private last: SinkStats = { batches: 0, landed: 0, duplicates: 0, deadLettered: 0, lastInsertMs: 0 }

  constructor() {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry, prefix: 'citysync_' })
    this.rows = new Counter({ name: 'citysync_sink_rows_total', help: 'Events handled by the warehouse sink, by outcome', labelNames: ['outcome'], registers })
    this.batches = new Counter({ name: 'citysync_sink_batches_total', help: 'Batches landed by the warehouse sink', registers })
    this.insertSeconds = new Gauge({ name: 'citysync_sink_last_batch_seconds', help: 'Time the last batch took to land (all its inserts)', registers })
    this.lag = new Gauge({ name: 'citysync_kafka_consumer_lag', help: 'Messages between the committed offset and the end of the partition', labelNames: ['topic', 'partition'], registers })
    this.committed = new Gauge({ name: 'citysync_kafka_committed_offset', help: 'Next offset to read, as committed by this pipeline', labelNames: ['topic', 'partition'], registers })
  }

  /** Folds in what the sink counted since the last call. */
  update(stats: SinkStats): void {
    this.rows.inc({ outcome: 'landed' }, stats.landed - this.last.landed)
    this.rows.inc({ outcome: 'duplicate' }, stats.duplicates - this.last.duplicates)
    this.rows.inc({ outcome: 'dead_letter' }, stats.deadLettered - this.last.deadLettered)
    this.batches.inc(stats.batches - this.last.batches)
    this.insertSeconds.set(stats.lastInsertMs / 1000)
    this.last = { ...stats }
  }

  readonly onCommitted: NonNullable<SubscribeOptions['onCommitted']> = ({ topic, partition, committed, lag }) => {
    this.lag.set({ topic, partition: String(partition) }, lag)
    this.committed.set({ topic, partition: String(partition) }, committed)
  }

  /** Serves GET /metrics; resolves with the URL. */
  async serve(port: number, host: string, stats: () => SinkStats): Promise<{ url: string; server: Server }> {
    const server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end()
        return
      }
      this.update(stats())
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      )
    })
    await new Promise<void>((resolve) => server.listen(port, host, resolve))
    const addr = server.address()
    const actual = typeof addr === 'object' && addr ? addr.port : port
    return { url: `http://${host}:${actual}/metrics`, server }
  }
}
