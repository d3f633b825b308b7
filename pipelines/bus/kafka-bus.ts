import { setTimeout as sleep } from 'node:timers/promises'
import { type Consumer, type EachBatchPayload, Kafka, logLevel as KafkaLogLevel, type LogEntry } from 'kafkajs'
import RdKafka from 'node-rdkafka'
import { type Logger } from 'pino'
import { CitysyncError, errorMessage } from '../../lib/errors.ts'
import {
  type BatchHandler,
  type Bus,
  type IncomingBatch,
  type IncomingMessage,
  type OutgoingMessage,
  type SubscribeOptions,
  type Subscription,
} from './bus.ts'
import { type KafkaConnection, kafkajsConfig, rdkafkaConfig } from './kafka-config.ts'

export interface KafkaBusOptions {
  connection: KafkaConnection
  log: Logger
  /** Messages the producer may hold before publish waits (backpressure). */
  maxBufferedMessages?: number
  /** How long the producer keeps retrying one message before publish fails. */
  deliveryTimeoutMs?: number
}

interface Delivery {
  remaining: number
  failed: unknown
  resolve: () => void
  reject: (err: unknown) => void
  topic: string
  count: number
}

const QUEUE_FULL = RdKafka.CODES.ERRORS.ERR__QUEUE_FULL

/**
 * Apache Kafka behind the bus interface. Publishing goes through librdkafka
 * (idempotent, acks=all, bounded local queue); consuming through kafkajs
 * consumer groups with manual commits. docs/decisions.md has the figures
 * behind that split.
 */
export class KafkaBus implements Bus {
  readonly kind = 'kafka'
  private readonly o: KafkaBusOptions
  private readonly kafka: Kafka
  private producer: RdKafka.Producer | undefined
  private producerReady: Promise<RdKafka.Producer> | undefined
  private roomWaiters: (() => void)[] = []
  /** Produced and not yet reported on: what librdkafka's queue holds. */
  private outstanding = 0
  private readonly maxBuffered: number
  private readonly consumers = new Set<Consumer>()
  private closed = false
  private scope: Promise<string> | undefined
  private readonly prefix: string

  constructor(o: KafkaBusOptions) {
    this.o = o
    this.prefix = o.connection.topicPrefix
    // Above the connectors' in-flight budget (50k), so that in steady flow a full queue is the exception.
    this.maxBuffered = o.maxBufferedMessages ?? 100_000
    const log = o.log
    this.kafka = new Kafka({
      ...kafkajsConfig(o.connection),
      logLevel: KafkaLogLevel.WARN,
      logCreator: () => (entry: LogEntry) => {
        const { message, ...rest } = entry.log
        const level = entry.level <= KafkaLogLevel.ERROR ? 'error' : entry.level === KafkaLogLevel.WARN ? 'warn' : 'debug'
        log[level]({ kafka: entry.namespace, ...rest }, message)
      },
    })
  }

  /** The kafkajs client, for admin tasks (topics, cluster id). */
  get client(): Kafka {
    return this.kafka
  }

  /**
   * The cluster id: it names the log that offsets belong to, so a wiped and
   * re-formatted cluster never reuses deduplication tokens of the old one.
   */
  clusterScope(): Promise<string> {
    this.scope ??= (async () => {
      const admin = this.kafka.admin()
      await admin.connect()
      try {
        const { clusterId } = await admin.describeCluster()
        return this.prefix ? `${clusterId.slice(0, 12)}.${this.prefix}` : clusterId.slice(0, 12)
      } finally {
        await admin.disconnect()
      }
    })()
    this.scope.catch(() => (this.scope = undefined))
    return this.scope
  }

  /**
   * A metadata request to the brokers within `timeoutMs` (readiness): its own
   * short-lived admin client without retries, so a down cluster answers fast.
   */
  async ping(timeoutMs: number): Promise<void> {
    const admin = new Kafka({ ...kafkajsConfig(this.o.connection), connectionTimeout: timeoutMs, requestTimeout: timeoutMs, retry: { retries: 0 }, logLevel: KafkaLogLevel.NOTHING }).admin()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CitysyncError('CITYSYNC_ERR_BUS_UNAVAILABLE', [`no metadata answer from ${this.o.connection.brokers.join(',')} within ${timeoutMs} ms`])), timeoutMs)
    })
    try {
      await Promise.race([
        (async () => {
          await admin.connect()
          await admin.fetchTopicMetadata({ topics: [] })
        })(),
        timeout,
      ])
    } finally {
      clearTimeout(timer)
      await admin.disconnect().catch(() => undefined)
    }
  }

  // ---- producing ----------------------------------------------------------

  private connectProducer(): Promise<RdKafka.Producer> {
    if (this.producerReady) return this.producerReady
    // A new producer starts with an empty queue; reports of the old one no longer come.
    this.outstanding = 0
    const p = new RdKafka.Producer(
      {
        ...rdkafkaConfig(this.o.connection),
        // Idempotence implies acks=all and at most 5 requests in flight, in order.
        'enable.idempotence': true,
        'linger.ms': 5,
        'batch.num.messages': 10_000,
        'queue.buffering.max.messages': this.maxBuffered,
        'queue.buffering.max.kbytes': 64 * 1024,
        'reconnect.backoff.max.ms': 2_000,
        dr_cb: true,
      },
      { 'request.required.acks': -1, 'message.timeout.ms': this.o.deliveryTimeoutMs ?? 120_000 },
    )
    p.on('delivery-report', (err, report) => {
      const d = report.opaque as Delivery | undefined
      if (d) {
        if (err && d.failed === undefined) d.failed = err
        if (--d.remaining === 0) {
          if (d.failed === undefined) d.resolve()
          else d.reject(new CitysyncError('CITYSYNC_ERR_BUS_DELIVERY', [String(d.count), d.topic, errorMessage(d.failed)], { cause: d.failed }))
        }
      }
      this.outstanding--
      // A full queue is retried once a quarter of it has drained, not after
      // every report: each refused produce costs an exception, and retrying
      // per report made one of those per message.
      if (this.roomWaiters.length > 0 && this.outstanding <= this.maxBuffered * 0.75) {
        const waiters = this.roomWaiters
        this.roomWaiters = []
        for (const w of waiters) w()
      }
    })
    p.on('event.error', (err) => {
      this.o.log.warn({ err: errorMessage(err) }, 'kafka producer error; retrying')
      if ((err as { isFatal?: boolean }).isFatal) {
        // An idempotent producer that lost its sequence cannot go on: start a fresh one.
        this.producerReady = undefined
        this.producer = undefined
        p.disconnect()
      }
    })
    this.producerReady = new Promise<RdKafka.Producer>((resolve, reject) => {
      p.connect({ timeout: 10_000 }, (err) => {
        if (err) {
          this.producerReady = undefined
          reject(new CitysyncError('CITYSYNC_ERR_BUS_UNAVAILABLE', [errorMessage(err)], { cause: err }))
          return
        }
        p.setPollInterval(10)
        this.producer = p
        resolve(p)
      })
    })
    return this.producerReady
  }

  /**
   * Resolves when Kafka has acknowledged every message (acks=all). When the
   * local queue is full, waits for room: a connector publishing faster than
   * Kafka accepts is slowed down, not failed.
   */
  async publish(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    if (this.closed) throw new CitysyncError('CITYSYNC_ERR_BUS_CLOSED')
    if (messages.length === 0) return
    const producer = await this.connectProducer()
    let resolveAll!: () => void
    let rejectAll!: (err: unknown) => void
    const acked = new Promise<void>((res, rej) => {
      resolveAll = res
      rejectAll = rej
    })
    const d: Delivery = { remaining: messages.length, failed: undefined, resolve: resolveAll, reject: rejectAll, topic, count: messages.length }
    const now = Date.now()
    for (const m of messages) {
      const headers: Record<string, string>[] = []
      for (const k in m.headers) headers.push({ [k]: m.headers[k]! })
      for (;;) {
        try {
          producer.produce(this.prefix + topic, null, m.value, m.key, now, d, headers)
          this.outstanding++
          break
        } catch (err) {
          if ((err as { code?: number }).code !== QUEUE_FULL) {
            d.remaining -= 1
            d.failed ??= err
            if (d.remaining === 0) rejectAll(new CitysyncError('CITYSYNC_ERR_BUS_DELIVERY', [String(d.count), topic, errorMessage(err)], { cause: err }))
            break
          }
          await new Promise<void>((r) => {
            this.roomWaiters.push(r)
            setTimeout(r, 100).unref()
          })
          if (this.closed) throw new CitysyncError('CITYSYNC_ERR_BUS_CLOSED')
        }
      }
    }
    return acked
  }

  // ---- consuming ----------------------------------------------------------

  subscribe(options: SubscribeOptions, handler: BatchHandler): Subscription {
    const consumer = this.kafka.consumer({
      groupId: options.group,
      sessionTimeout: this.o.connection.sessionTimeoutMs,
      heartbeatInterval: Math.max(500, Math.floor(this.o.connection.sessionTimeoutMs / 10)),
      maxWaitTimeInMs: Math.max(10, options.maxWaitMs),
      minBytes: 64 * 1024,
      maxBytesPerPartition: 8 * 2 ** 20,
      maxBytes: 32 * 2 ** 20,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000 },
    })
    this.consumers.add(consumer)
    const run = new PartitionBatcher(consumer, options, handler, this.o.log, () => this.clusterScope(), this.prefix)
    const done = (async () => {
      await consumer.connect()
      await consumer.subscribe({ topics: options.topics.map((t) => this.prefix + t), fromBeginning: true })
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        run.reassigned()
        this.o.log.info({ group: options.group, assignment: e.payload.memberAssignment }, 'kafka partitions assigned')
      })
      const crashed = new Promise<never>((_, reject) => {
        consumer.on(consumer.events.CRASH, (e) => {
          if (!e.payload.restart) reject(e.payload.error)
        })
      })
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 2,
        eachBatch: (payload) => run.onBatch(payload),
      })
      const stopped = new Promise<void>((resolve) => {
        if (options.signal.aborted) resolve()
        options.signal.addEventListener('abort', () => resolve(), { once: true })
      })
      await Promise.race([stopped, crashed])
      await consumer.disconnect()
    })().finally(() => this.consumers.delete(consumer))
    return { done }
  }

  async close(): Promise<void> {
    this.closed = true
    for (const w of this.roomWaiters) w()
    await Promise.all([...this.consumers].map((c) => c.disconnect().catch(() => undefined)))
    const p = this.producer
    if (p) {
      await new Promise<void>((resolve) => p.flush(10_000, () => resolve()))
      await new Promise<void>((resolve) => p.disconnect(5_000, () => resolve()))
    }
  }
}

interface Pending {
  /** Offset the next fetched message must have to extend this buffer. */
  next: number
  messages: IncomingMessage[]
  /** Whether the journal was asked about the first message's offset. */
  checked: boolean
  planned: number | undefined
}

/**
 * Cuts each partition's messages into batches, runs the handler and commits.
 * A batch's range is written to the journal before the handler runs; a
 * partition taken over after a crash or a rebalance starts with exactly the
 * batch the previous owner was working on, so the warehouse sees the same
 * deduplication tokens and keeps one copy.
 */
class PartitionBatcher {
  private readonly pending = new Map<string, Pending>()
  private readonly consumer: Consumer
  private readonly o: SubscribeOptions
  private readonly handler: BatchHandler
  private readonly log: Logger
  private readonly scope: () => Promise<string>
  private readonly prefix: string

  constructor(consumer: Consumer, o: SubscribeOptions, handler: BatchHandler, log: Logger, scope: () => Promise<string>, prefix: string) {
    this.prefix = prefix
    this.consumer = consumer
    this.o = o
    this.handler = handler
    this.log = log
    this.scope = scope
  }

  private ready: Promise<void> = Promise.resolve()

  /** After a rebalance every partition restarts from its committed offset. */
  reassigned(): void {
    this.pending.clear()
    const hook = this.o.onAssigned
    if (!hook) return
    this.ready = (async () => {
      for (let attempt = 1; !this.o.signal.aborted; attempt++) {
        try {
          await hook()
          return
        } catch (err) {
          this.log.warn({ err: errorMessage(err), attempt }, 'partition assignment hook failed; retrying before handling batches')
          await sleep(Math.min(10_000, 250 * 2 ** Math.min(attempt, 6)))
        }
      }
    })()
  }

  async onBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload
    const { partition } = batch
    // Handlers and the journal see the topic's logical name; the prefix is in the scope.
    const topic = batch.topic.slice(this.prefix.length)
    const heartbeat = (): Promise<void> => payload.heartbeat()
    const isRunning = (): boolean => payload.isRunning()
    const isStale = (): boolean => payload.isStale()
    const key = `${topic}\x1f${partition}`
    if (batch.messages.length === 0) return
    await this.ready
    const scope = await this.scope()
    const first = Number(batch.messages[0]!.offset)
    let p = this.pending.get(key)
    if (!p || p.next !== first) {
      p = { next: first, messages: [], checked: false, planned: undefined }
      this.pending.set(key, p)
    }
    for (const m of batch.messages) {
      const headers: Record<string, string> = {}
      for (const [k, v] of Object.entries(m.headers ?? {})) if (v !== undefined) headers[k] = String(v)
      p.messages.push({
        offset: Number(m.offset),
        timestamp: Number(m.timestamp),
        key: m.key?.toString() ?? '',
        value: m.value ?? Buffer.alloc(0),
        headers,
      })
    }
    p.next = Number(batch.lastOffset()) + 1
    payload.resolveOffset(batch.lastOffset())

    while (p.messages.length > 0) {
      if (!isRunning() || isStale()) {
        this.pending.delete(key)
        return
      }
      const firstOffset = p.messages[0]!.offset
      const range = { group: this.o.group, scope, topic, partition, firstOffset }
      const journal = this.o.journal
      if (!p.checked) {
        if (journal) {
          let planned: number | undefined
          const ok = await this.untilDone(`journal lookup ${topic}/${partition}@${firstOffset}`, topic, partition, async () => {
            planned = await journal.planned(range)
          }, heartbeat, isRunning, isStale)
          if (!ok) {
            this.pending.delete(key)
            return
          }
          p.planned = planned
        }
        p.checked = true
      }
      let count: number
      if (p.planned !== undefined) {
        count = p.planned - firstOffset + 1
        if (p.messages.length < count) return // the rest of that batch is still to be fetched
      } else {
        count = Math.min(this.o.maxBatchSize, p.messages.length)
      }
      const messages = p.messages.slice(0, count)
      const lastOffset = messages[messages.length - 1]!.offset
      if (journal && p.planned === undefined) {
        const ok = await this.untilDone(`journal record ${topic}/${partition}@${firstOffset}`, topic, partition, () => journal.record({ ...range, lastOffset }), heartbeat, isRunning, isStale)
        if (!ok) {
          this.pending.delete(key)
          return
        }
        // Recorded: a retry of this batch must keep this range even if the handler fails.
        p.planned = lastOffset
      }
      const incoming: IncomingBatch = { scope, topic, partition, messages, firstOffset, lastOffset }
      const handled = await this.untilDone(`batch ${topic}/${partition}@${firstOffset}-${lastOffset}`, topic, partition, () => this.handler(incoming, this.o.signal), heartbeat, isRunning, isStale, incoming)
      if (!handled) {
        this.pending.delete(key)
        return
      }
      await this.consumer.commitOffsets([{ topic: batch.topic, partition, offset: String(lastOffset + 1) }])
      this.o.onCommitted?.({ topic, partition, committed: lastOffset + 1, lag: Math.max(0, Number(batch.highWatermark) - lastOffset - 1) })
      p.messages = p.messages.slice(count)
      p.planned = undefined
      await heartbeat()
    }
  }

  /**
   * Runs `fn` until it succeeds (the warehouse may be down); the partition is
   * paused meanwhile and the group kept informed by heartbeats. False if the
   * partition was taken away or the subscription stopped.
   */
  private async untilDone(
    what: string,
    topic: string,
    partition: number,
    fn: () => Promise<void>,
    heartbeat: () => Promise<void>,
    isRunning: () => boolean,
    isStale: () => boolean,
    batch?: IncomingBatch,
  ): Promise<boolean> {
    let paused = false
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await fn()
          return true
        } catch (err) {
          if (batch) this.o.onError?.(err, batch, attempt)
          else this.log.warn({ err: errorMessage(err), attempt }, `${what} failed; partition paused, will retry`)
          if (!paused) {
            this.consumer.pause([{ topic: this.prefix + topic, partitions: [partition] }])
            paused = true
          }
          const until = Date.now() + Math.min(30_000, 250 * 2 ** Math.min(attempt, 7))
          while (Date.now() < until) {
            if (!isRunning() || isStale() || this.o.signal.aborted) return false
            await heartbeat()
            await sleep(Math.min(1_000, until - Date.now()))
          }
        }
      }
    } finally {
      if (paused) {
        this.consumer.resume([{ topic: this.prefix + topic, partitions: [partition] }])
        this.log.info({ topic, partition }, 'partition resumed')
      }
    }
  }
}
