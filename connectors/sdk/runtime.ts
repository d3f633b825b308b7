import { setTimeout as sleep } from 'node:timers/promises'
import { Cron } from 'croner'
import type PQueue from 'p-queue'
import { type Logger } from 'pino'
import { type Clock } from '../../lib/clock.ts'
import { CitysyncError, errorMessage } from '../../lib/errors.ts'
import { type Publisher } from '../../pipelines/publisher.ts'
import { type Connector, type Ctx } from './connector.ts'

/** Where the runtime keeps a source's cursor and run state (the metadata store). */
export interface StateStore {
  getCursor(sourceId: string): Promise<unknown>
  saveCheckpoint(sourceId: string, cursor: unknown, at: number): Promise<void>
  setRunState(sourceId: string, state: RunState, error?: string): Promise<void>
  recordFailure(sourceId: string, error: string, at: number): Promise<void>
  recordSuccess(sourceId: string, at: number): Promise<void>
}

export const RUN_STATES = ['idle', 'running', 'backoff', 'failed', 'stopped'] as const
export type RunState = (typeof RUN_STATES)[number]

export type Schedule = { everyMs: number } | { cron: string }

export interface RunnerSource {
  id: string
  timezone: string
  schedule: Schedule
  config: unknown
}

export interface RetryPolicy {
  baseMs: number
  maxMs: number
  /** Consecutive failed runs after which the state says 'failed' (it still retries at maxMs). */
  failAfter: number
}

export const DEFAULT_RETRY: RetryPolicy = { baseMs: 1_000, maxMs: 5 * 60_000, failAfter: 8 }

export interface RunnerOptions {
  source: RunnerSource
  connector: Connector<unknown, unknown>
  state: StateStore
  publisher: Publisher
  clock: Clock
  log: Logger
  /** Shared across sources: bounds how many reads run at once. */
  queue: PQueue
  retry?: RetryPolicy
  requestTimeoutMs?: number
  /** Messages handed to the bus and not yet safe, before the reader waits (default 50k: two sink blocks in the pipe). */
  maxInFlight?: number
  /** Records buffered before they are sent even without a checkpoint. */
  flushEvery?: number
}

export interface RunOutcome {
  records: number
  rejected: number
  checkpoints: number
}

/** Exponential backoff with jitter: uniform between base/2 and min(max, base·2^(attempt-1)). */
export function backoffDelay(attempt: number, policy: RetryPolicy, random = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(policy.baseMs / 2 + random() * (ceiling - policy.baseMs / 2))
}

export function nextRunDelay(schedule: Schedule, now: number, timezone: string): number {
  if ('everyMs' in schedule) return schedule.everyMs
  const next = new Cron(schedule.cron, { timezone }).nextRun(new Date(now))
  return next ? Math.max(0, next.getTime() - now) : 60_000
}

/**
 * Runs one source: reads on its schedule, publishes, and moves the cursor.
 *
 * The cursor rule: a checkpoint yielded by the connector is saved only after
 * every record yielded before it is safe on the bus (landed, in embedded mode).
 * Reading goes on meanwhile; checkpoints are saved in order on one chain.
 */
export class SourceRunner {
  private readonly o: RunnerOptions
  private readonly stopper = new AbortController()
  private loop: Promise<void> | undefined
  private failures = 0
  state: RunState = 'idle'

  constructor(o: RunnerOptions) {
    this.o = o
  }

  get id(): string {
    return this.o.source.id
  }

  start(): void {
    if (this.loop) return
    this.loop = this.runLoop()
  }

  /**
   * Stops reading, waits for what was read to be safe, saves the last
   * checkpoint. If the sink cannot land it within `graceMs` (warehouse down),
   * stop gives up waiting: nothing is lost, the cursor simply stays where the
   * last landed record left it and the next start re-reads from there.
   */
  async stop(graceMs = 30_000): Promise<void> {
    this.stopper.abort()
    let timer: NodeJS.Timeout | undefined
    const gaveUp = await Promise.race([
      this.loop?.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
    ])
    clearTimeout(timer)
    if (gaveUp) this.o.log.warn({ sourceId: this.o.source.id, graceMs }, 'stopped before the last records landed; they will be read again')
    this.state = 'stopped'
    await this.o.state.setRunState(this.o.source.id, 'stopped').catch(() => undefined)
  }

  private async runLoop(): Promise<void> {
    const { source, log, clock } = this.o
    const signal = this.stopper.signal
    while (!signal.aborted) {
      let delay: number
      let run: Promise<RunOutcome> | undefined
      try {
        await this.o.queue.add(() => (run = this.runOnce(signal)), { signal })
        this.failures = 0
        delay = nextRunDelay(source.schedule, clock.now(), source.timezone)
      } catch (err) {
        // A stop rejects the queue's promise at once, while a started run is still
        // landing what it read and saving its checkpoint: stop waits for that.
        if (run !== undefined) await Promise.allSettled([run])
        if (signal.aborted) break
        this.failures++
        const message = errorMessage(err)
        delay = backoffDelay(this.failures, this.o.retry ?? DEFAULT_RETRY)
        this.state = this.failures >= (this.o.retry ?? DEFAULT_RETRY).failAfter ? 'failed' : 'backoff'
        log.warn({ sourceId: source.id, err: message, attempt: this.failures, retryInMs: delay }, 'source read failed')
        await this.o.state.recordFailure(source.id, message, clock.now()).catch(() => undefined)
        await this.o.state.setRunState(source.id, this.state, message).catch(() => undefined)
      }
      await sleep(delay, undefined, { signal }).catch(() => undefined)
    }
  }

  /** One read from the saved cursor until the connector is caught up. */
  async runOnce(signal: AbortSignal = this.stopper.signal): Promise<RunOutcome> {
    const { source, connector, state, publisher, clock, log } = this.o
    const maxInFlight = this.o.maxInFlight ?? 50_000
    const flushEvery = this.o.flushEvery ?? 5_000
    const started = clock.now()
    this.state = 'running'
    await state.setRunState(source.id, 'running')

    const ctx = this.ctx(signal)
    const cursor = (await state.getCursor(source.id)) ?? undefined
    const outcome: RunOutcome = { records: 0, rejected: 0, checkpoints: 0 }
    const inFlight: { promise: Promise<void>; count: number }[] = []
    let inFlightCount = 0
    let chain: Promise<void> = Promise.resolve()
    let chainError: Error | undefined

    const send = (): Promise<void> => {
      const count = publisher.bufferedCount
      const promise = publisher.flush()
      if (count > 0) {
        const entry = { promise, count }
        inFlight.push(entry)
        inFlightCount += count
        void promise.then(
          () => {
            inFlight.splice(inFlight.indexOf(entry), 1)
            inFlightCount -= count
          },
          () => undefined,
        )
      }
      return promise
    }
    const waitForRoom = async (): Promise<void> => {
      while (inFlightCount > maxInFlight && inFlight.length > 0) await inFlight[0]!.promise
    }

    try {
      for await (const msg of connector.read(source.config, cursor, ctx)) {
        if (chainError) throw chainError
        switch (msg.type) {
          case 'record':
            publisher.record(msg.event, msg.draft)
            outcome.records++
            break
          case 'itemError':
            publisher.reject('connector', msg.code, msg.reason, msg.event, msg.raw)
            outcome.rejected++
            break
          case 'checkpoint': {
            // Everything before this checkpoint, including earlier sends, must be safe.
            const before = Promise.all([...inFlight.map((e) => e.promise), send()])
            const at = clock.now()
            chain = chain
              .then(() => before)
              .then(() => state.saveCheckpoint(source.id, msg.cursor, at))
              .catch((err: unknown) => {
                chainError ??= err instanceof Error ? err : new Error(String(err))
              })
            outcome.checkpoints++
            break
          }
          case 'status':
            log[msg.level]({ sourceId: source.id }, msg.message)
            break
        }
        if (publisher.bufferedCount >= flushEvery) void send().catch(() => undefined)
        // Awaited only when over budget: a resolved await per record costs a microtask turn each.
        if (inFlightCount > maxInFlight) await waitForRoom()
        if (signal.aborted) break
      }
      publisher.heartbeat({
        occurredAt: clock.now(),
        status: outcome.records + outcome.rejected > 0 ? 'ok' : 'empty',
        itemsRead: outcome.records + outcome.rejected,
        latencyMs: clock.now() - started,
        message: null,
      })
    } catch (err) {
      if (!signal.aborted) {
        publisher.heartbeat({ occurredAt: clock.now(), status: 'error', itemsRead: outcome.records, latencyMs: clock.now() - started, message: errorMessage(err).slice(0, 500) })
      }
      // Let the records read so far land and their checkpoints be saved before reporting.
      await Promise.allSettled([send(), chain])
      throw err
    }
    await Promise.allSettled([send()])
    await chain
    if (chainError) throw chainError
    this.state = 'idle'
    await state.recordSuccess(source.id, clock.now())
    await state.setRunState(source.id, 'idle')
    log.debug({ sourceId: source.id, ...outcome, ms: clock.now() - started }, 'source read done')
    return outcome
  }

  private ctx(signal: AbortSignal): Ctx {
    const { source, clock, log } = this.o
    const requestTimeoutMs = this.o.requestTimeoutMs ?? 30_000
    return {
      sourceId: source.id,
      timezone: source.timezone,
      clock,
      log: log.child({ sourceId: source.id }),
      signal,
      async fetch(url, init = {}) {
        const timeoutMs = init.timeoutMs ?? requestTimeoutMs
        try {
          return await fetch(url, { ...init, signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) })
        } catch (err) {
          if (err instanceof DOMException && err.name === 'TimeoutError') {
            throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_TIMEOUT', [timeoutMs], { cause: err })
          }
          throw err
        }
      },
    }
  }
}
