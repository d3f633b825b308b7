import { randomUUID } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { CitysyncError } from '../../lib/errors.ts'
import {
  type BatchHandler,
  type Bus,
  type IncomingBatch,
  type IncomingMessage,
  type OutgoingMessage,
  type SubscribeOptions,
  type Subscription,
} from './bus.ts'

interface Waiter {
  offset: number
  resolve: () => void
}

/** One topic's log (a single partition): messages stay until every group has committed them. */
class TopicLog {
  /** Offset of log[0]. */
  base = 0
  readonly log: IncomingMessage[] = []
  readonly committed = new Map<string, number>() // group -> next offset to read
  readonly waiters: Waiter[] = []
  private wake: (() => void)[] = []

  get end(): number {
    return this.base + this.log.length
  }

  append(messages: readonly OutgoingMessage[], enqueuedAt: number): number {
    for (const m of messages) {
      this.log.push({ offset: this.end, timestamp: enqueuedAt, key: m.key, value: m.value, headers: m.headers })
    }
    const wake = this.wake
    this.wake = []
    for (const w of wake) w()
    return this.end - 1
  }

  dataAfter(offset: number, signal: AbortSignal): Promise<void> {
    if (this.end > offset || signal.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        signal.removeEventListener('abort', done)
        resolve()
      }
      signal.addEventListener('abort', done, { once: true })
      this.wake.push(done)
    })
  }

  commit(group: string, next: number): void {
    this.committed.set(group, next)
    let low = Infinity
    for (const n of this.committed.values()) low = Math.min(low, n)
    // Release publishers whose messages every group has now committed.
    let kept = 0
    for (const w of this.waiters) {
      if (w.offset < low) w.resolve()
      else this.waiters[kept++] = w
    }
    this.waiters.length = kept
    if (low > this.base && low !== Infinity) {
      this.log.splice(0, low - this.base)
      this.base = low
    }
  }

  slice(from: number, max: number): IncomingMessage[] {
    return this.log.slice(from - this.base, from - this.base + max)
  }
}

/**
 * The embedded transport. Same contract as Kafka, but a publish resolves only
 * when every subscribed group has committed the messages, i.e. once they have
 * landed: a connector's checkpoint then never runs ahead of the warehouse,
 * and a crash loses nothing (the connector re-reads from its checkpoint).
 */
export class MemoryBus implements Bus {
  readonly kind = 'memory'
  private readonly scope = randomUUID().slice(0, 8)
  private readonly topics = new Map<string, TopicLog>()
  private closed = false

  private topic(name: string): TopicLog {
    let t = this.topics.get(name)
    if (!t) {
      t = new TopicLog()
      this.topics.set(name, t)
    }
    return t
  }

  publish(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    if (this.closed) return Promise.reject(new CitysyncError('CITYSYNC_ERR_BUS_CLOSED'))
    if (messages.length === 0) return Promise.resolve()
    const t = this.topic(topic)
    const last = t.append(messages, Date.now())
    return new Promise((resolve) => t.waiters.push({ offset: last, resolve }))
  }

  /** Messages published but not yet committed by every group, per topic. */
  backlog(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [name, t] of this.topics) out[name] = t.log.length
    return out
  }

  subscribe(options: SubscribeOptions, handler: BatchHandler): Subscription {
    // One waiting consumer loop per topic listens on the same signal.
    setMaxListeners(Math.max(10, options.topics.length * 2 + 10), options.signal)
    const loops = options.topics.map((name) => this.consume(name, options, handler))
    return { done: Promise.all(loops).then(() => undefined) }
  }

  private async consume(name: string, o: SubscribeOptions, handler: BatchHandler): Promise<void> {
    const t = this.topic(name)
    if (!t.committed.has(o.group)) t.committed.set(o.group, t.base)
    const signal = o.signal
    while (!signal.aborted) {
      const from = t.committed.get(o.group) ?? t.base
      await t.dataAfter(from, signal)
      if (signal.aborted) break
      // Linger until the batch is full or its oldest message is maxWaitMs old.
      const firstAt = t.slice(from, 1)[0]?.timestamp ?? Date.now()
      const lingerUntil = firstAt + o.maxWaitMs
      while (t.end - from < o.maxBatchSize && Date.now() < lingerUntil && !signal.aborted) {
        await sleep(Math.min(20, Math.max(1, lingerUntil - Date.now())))
      }
      if (signal.aborted) break
      const messages = t.slice(from, o.maxBatchSize)
      const batch: IncomingBatch = {
        scope: this.scope,
        topic: name,
        partition: 0,
        messages,
        firstOffset: messages[0]!.offset,
        lastOffset: messages[messages.length - 1]!.offset,
      }
      for (let attempt = 1; ; attempt++) {
        try {
          await handler(batch, signal)
          t.commit(o.group, batch.lastOffset + 1)
          o.onCommitted?.({ topic: name, partition: 0, committed: batch.lastOffset + 1, lag: t.end - batch.lastOffset - 1 })
          break
        } catch (err) {
          o.onError?.(err, batch, attempt)
          if (signal.aborted) return
          await sleep(Math.min(30_000, 200 * 2 ** Math.min(attempt, 8)), undefined, { signal }).catch(() => undefined)
          if (signal.aborted) return
        }
      }
    }
  }

  close(): Promise<void> {
    this.closed = true
    return Promise.resolve()
  }
}
