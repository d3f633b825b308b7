import PQueue from 'p-queue'
import { type Logger } from 'pino'
import { type Clock } from '../../lib/clock.ts'
import { parseDuration } from '../../lib/duration.ts'
import { errorMessage } from '../../lib/errors.ts'
import { type Metadata } from '../../lib/metadata/db.ts'
import { type SourceConfig } from '../../lib/source-config.ts'
import { type Bus } from '../../pipelines/bus/bus.ts'
import { type DraftEncoder } from '../../pipelines/draft-encoder.ts'
import { type PlateProtector } from '../../pipelines/normalise.ts'
import { Publisher } from '../../pipelines/publisher.ts'
import { type SchemaCatalogue } from '../../schemas/catalogue.ts'
import { connectorFor } from '../registry.ts'
import { type RunState, type Schedule, SourceRunner, type StateStore } from './runtime.ts'

export interface ManagerOptions {
  metadata: Metadata
  bus: Bus
  catalogue: SchemaCatalogue
  clock: Clock
  log: Logger
  protectPlate: PlateProtector
  /** Reads running at once across all sources. */
  concurrency?: number
  /** How often the desired state is re-read from the metadata store (changes made by other processes). */
  pollMs?: number
  /** Restrict this process to some sources (`citysync connect --source ID`). */
  only?: readonly string[]
  /** Shared by every source's publisher; see Publisher. */
  encoder?: DraftEncoder
}

export function toSchedule(s: SourceConfig['schedule']): Schedule {
  if ('cron' in s && s.cron) return { cron: s.cron }
  return { everyMs: parseDuration((s as { every: string | number }).every) }
}

/**
 * Keeps one runner per deployed source and none for paused or removed ones.
 * The metadata store is the truth: deploy/pause/resume write the desired state
 * there, and every process that runs connectors reconciles against it.
 */
export class SourceManager {
  private readonly o: ManagerOptions
  private readonly runners = new Map<string, { runner: SourceRunner; version: number }>()
  private readonly queue: PQueue
  private timer: NodeJS.Timeout | undefined
  private reconciling: Promise<void> = Promise.resolve()
  private stopped = false

  constructor(o: ManagerOptions) {
    this.o = o
    this.queue = new PQueue({ concurrency: o.concurrency ?? 8 })
  }

  async start(): Promise<void> {
    await this.reconcile()
    this.timer = setInterval(() => void this.reconcile().catch(() => undefined), this.o.pollMs ?? 2_000)
    this.timer.unref()
  }

  runState(id: string): RunState | undefined {
    return this.runners.get(id)?.runner.state
  }

  running(): string[] {
    return [...this.runners.keys()]
  }

  /** Serialised so that a poll and an operator's action never race. */
  reconcile(): Promise<void> {
    this.reconciling = this.reconciling.then(() => this.doReconcile()).catch((err: unknown) => {
      this.o.log.error({ err: errorMessage(err) }, 'reconcile failed')
    })
    return this.reconciling
  }

  async restart(id: string): Promise<void> {
    const entry = this.runners.get(id)
    if (entry) {
      this.runners.delete(id)
      await entry.runner.stop()
    }
    await this.reconcile()
  }

  async stopAll(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    await this.reconciling
    await Promise.all([...this.runners.values()].map((e) => e.runner.stop()))
    this.runners.clear()
  }

  private async doReconcile(): Promise<void> {
    if (this.stopped) return
    const wanted = new Map<string, { source: SourceConfig; version: number }>()
    for (const s of await this.o.metadata.sources.list()) {
      if (s.desiredState !== 'deployed') continue
      if (this.o.only && !this.o.only.includes(s.id)) continue
      wanted.set(s.id, { source: s, version: s.version })
    }
    for (const [id, entry] of this.runners) {
      const w = wanted.get(id)
      if (!w || w.version !== entry.version) {
        this.runners.delete(id)
        await entry.runner.stop()
        this.o.log.info({ sourceId: id }, w ? 'source changed; restarting' : 'source stopped')
      }
    }
    for (const [id, w] of wanted) {
      if (this.runners.has(id) || this.stopped) continue
      const runner = this.createRunner(w.source)
      if (!runner) continue
      this.runners.set(id, { runner, version: w.version })
      runner.start()
      this.o.log.info({ sourceId: id, kind: w.source.kind }, 'source started')
    }
  }

  private createRunner(source: SourceConfig): SourceRunner | undefined {
    const connector = connectorFor(source.kind)
    if (!connector) {
      this.o.log.error({ sourceId: source.id, kind: source.kind }, 'no connector for this kind; source not started')
      return undefined
    }
    const { metadata, clock, log } = this.o
    return new SourceRunner({
      source: { id: source.id, timezone: source.timezone, schedule: toSchedule(source.schedule), config: source.config },
      connector,
      state: stateStore(metadata),
      publisher: new Publisher({ sourceId: source.id, bus: this.o.bus, catalogue: this.o.catalogue, clock, protectPlate: this.o.protectPlate, encoder: this.o.encoder }),
      clock,
      log,
      queue: this.queue,
    })
  }
}

export function stateStore(metadata: Metadata): StateStore {
  const s = metadata.connectorState
  return {
    getCursor: async (id) => (await s.get(id))?.cursor ?? undefined,
    saveCheckpoint: (id, cursor, at) => s.saveCheckpoint(id, cursor, at),
    setRunState: (id, state, error) => s.setRunState(id, state, error),
    recordFailure: (id, error, at) => s.recordFailure(id, error, at),
    recordSuccess: (id, at) => s.recordSuccess(id, at),
  }
}
