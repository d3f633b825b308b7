import { createServer, type Server } from 'node:http'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { type SubscribeOptions } from './bus/bus.ts'
import { type BatchReport, type SinkObserver } from './warehouse-sink.ts'

/** Messages per batch: the sink takes up to 10,000 (distributed) or what arrived within maxWait. */
const BATCH_BUCKETS = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000]
/** Seconds: a chDB insert of a small batch takes milliseconds, a server insert of 10,000 rows a fraction of a second. */
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * Prometheus metrics of the warehouse sink (the pipeline role, or the
 * embedded process): rows by outcome and per source, dead letters per source
 * and code, batch sizes and insert latencies, and the consumer lag per
 * topic-partition. Names and meanings: docs/operations.md, Monitoring.
 */
export class SinkMetrics implements SinkObserver {
  readonly registry: Registry
  private readonly rows: Counter
  private readonly batches: Counter
  private readonly lastBatchSeconds: Gauge
  private readonly landed: Counter
  private readonly deadLetters: Counter
  private readonly batchMessages: Histogram
  private readonly batchSeconds: Histogram
  private readonly insertSeconds: Histogram
  private readonly lag: Gauge
  private readonly committed: Gauge

  /** On `registry` when given (a process with one registry for everything), else on a registry of its own with the process metrics. */
  constructor(o: { registry?: Registry } = {}) {
    this.registry = o.registry ?? new Registry()
    if (o.registry === undefined) collectDefaultMetrics({ register: this.registry, prefix: 'citysync_' })
    const registers = [this.registry]
    this.rows = new Counter({ name: 'citysync_sink_rows_total', help: 'Messages handled by the warehouse sink, by outcome (landed, duplicate, dead_letter)', labelNames: ['outcome'], registers })
    this.batches = new Counter({ name: 'citysync_sink_batches_total', help: 'Batches landed by the warehouse sink', registers })
    this.lastBatchSeconds = new Gauge({ name: 'citysync_sink_last_batch_seconds', help: 'Time the last batch took to land (all its inserts)', registers })
    this.landed = new Counter({ name: 'citysync_source_rows_landed_total', help: 'Rows landed in the warehouse, by source and table', labelNames: ['source', 'table'], registers })
    this.deadLetters = new Counter({ name: 'citysync_dead_letters_total', help: 'Records rejected into the dead-letter table, by source, stage and code', labelNames: ['source', 'stage', 'code'], registers })
    this.batchMessages = new Histogram({ name: 'citysync_sink_batch_messages', help: 'Messages per batch handled by the warehouse sink', labelNames: ['topic'], buckets: BATCH_BUCKETS, registers })
    this.batchSeconds = new Histogram({ name: 'citysync_sink_batch_seconds', help: 'Time a batch took from decoding to its last insert', buckets: SECONDS_BUCKETS, registers })
    this.insertSeconds = new Histogram({ name: 'citysync_warehouse_insert_seconds', help: 'Latency of one warehouse insert, by table', labelNames: ['table'], buckets: SECONDS_BUCKETS, registers })
    this.lag = new Gauge({ name: 'citysync_kafka_consumer_lag', help: "Messages between the sink group's committed offset and the end of the partition (in-process bus: partition 0 of each topic)", labelNames: ['topic', 'partition'], registers })
    this.committed = new Gauge({ name: 'citysync_kafka_committed_offset', help: 'Next offset to read, as committed by the sink group', labelNames: ['topic', 'partition'], registers })
  }

  batch(r: BatchReport): void {
    let landed = 0
    for (const [source, tables] of r.landed) {
      for (const [table, n] of tables) {
        this.landed.inc({ source, table }, n)
        landed += n
      }
    }
    for (const d of r.deadLetters) this.deadLetters.inc({ source: d.sourceId, stage: d.stage, code: d.code })
    this.rows.inc({ outcome: 'landed' }, landed)
    this.rows.inc({ outcome: 'duplicate' }, r.duplicates)
    this.rows.inc({ outcome: 'dead_letter' }, r.deadLetters.length)
    this.batches.inc()
    this.lastBatchSeconds.set(r.ms / 1000)
    this.batchMessages.observe({ topic: r.topic }, r.messages)
    this.batchSeconds.observe(r.ms / 1000)
    for (const i of r.inserts) this.insertSeconds.observe({ table: i.table }, i.ms / 1000)
  }

  readonly onCommitted: NonNullable<SubscribeOptions['onCommitted']> = ({ topic, partition, committed, lag }) => {
    this.lag.set({ topic, partition: String(partition) }, lag)
    this.committed.set({ topic, partition: String(partition) }, committed)
  }

  /** Serves GET /metrics; resolves with the URL. */
  async serve(port: number, host: string): Promise<{ url: string; server: Server }> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404).end()
        return
      }
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
