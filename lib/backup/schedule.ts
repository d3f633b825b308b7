// Backups taken by the process that holds the stores (`citysync start`): chDB
// admits one process per data directory, so in embedded mode the running
// process backs up through its own warehouse session instead of being stopped
// for `citysync backup`. Same backup, same manifest, same order (metadata
// first, then the warehouse: cursors at or behind the data), taken while rows
// keep landing.

import { Cron } from 'croner'
import { type Logger } from 'pino'
import { type Clock, systemClock } from '../clock.ts'
import { type DerivedKeys } from '../crypto.ts'
import { CitysyncError, errorMessage } from '../errors.ts'
import { createBackup, type BackupResult } from './backup.ts'
import { checkKeep } from './retention.ts'
import { type WarehouseEngine } from './warehouse-snapshot.ts'

export const DEFAULT_BACKUP_SCHEDULE = '30 2 * * *'

export interface BackupScheduleOptions {
  stores: { dataDir: string; clickhouseUrl: string | undefined; databaseUrl: string | undefined }
  /** The target folder (keep it off this machine: a mount of another host). */
  to: string
  keep?: number | undefined
  /** Cron expression in `timezone` (5 fields, or 6 with seconds). */
  schedule: string
  timezone?: string
  keys: DerivedKeys
  version: string
  engine: WarehouseEngine
  clock?: Clock
  log: Logger
}

export class BackupSchedule {
  readonly #o: BackupScheduleOptions
  readonly #cron: Cron
  #running: Promise<BackupResult> | undefined

  constructor(o: BackupScheduleOptions) {
    this.#o = o
    if (o.keep !== undefined) checkKeep(o.keep) // a bad CITYSYNC_BACKUP_KEEP stops the start, not the 02:30 run
    try {
      this.#cron = new Cron(o.schedule, { timezone: o.timezone ?? 'Asia/Shanghai', paused: true }, () => {
        this.run().catch((err: unknown) => o.log.error({ err: errorMessage(err) }, 'scheduled backup failed'))
      })
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`CITYSYNC_BACKUP_SCHEDULE: ${errorMessage(err)}`], { cause: err })
    }
  }

  start(): void {
    this.#cron.resume()
    this.#o.log.info({ schedule: this.#o.schedule, to: this.#o.to, next: this.#cron.nextRun()?.toISOString() }, 'backups scheduled')
  }

  /** One backup now; while one runs, callers share it rather than start a second. */
  run(): Promise<BackupResult> {
    this.#running ??= (async () => {
      const o = this.#o
      const started = (o.clock ?? systemClock).now()
      try {
        const r = await createBackup({ stores: o.stores, to: o.to, keys: o.keys, version: o.version, engine: o.engine, log: o.log, ...(o.keep === undefined ? {} : { keep: o.keep }), ...(o.clock ? { clock: o.clock } : {}) })
        o.log.info({ backup: r.dir, ms: (o.clock ?? systemClock).now() - started, removed: r.removed.length }, 'scheduled backup written')
        return r
      } finally {
        this.#running = undefined
      }
    })()
    return this.#running
  }

  /** Stops the schedule and waits for a backup under way. */
  async stop(): Promise<void> {
    this.#cron.stop()
    await this.#running?.catch(() => undefined)
  }
}
