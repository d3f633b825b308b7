// Reports on a schedule, inside the quality service: on the 1st of each
// month at 08:00 (Asia/Shanghai) the previous month's sync report is
// generated and archived; every hour, archived months that backfilled rows
// changed since their current revision are generated again. A check also
// runs a minute after start, so a month missed while the service was down is
// made up for.

import { Cron } from 'croner'
import { type Logger } from 'pino'
import { type Clock } from '../../lib/clock.ts'
import { errorMessage } from '../../lib/errors.ts'
import { parseLocal } from '../../lib/local-time.ts'
import { DEFAULT_TIMEZONE } from '../../lib/source-config.ts'
import { monthOf, previousMonth } from './period.ts'
import { type Reports } from './reports.ts'

export interface ReportSchedulerOptions {
  /** Zone of the schedule and of the reports (default Asia/Shanghai). */
  zone?: string
  /** When the monthly report is due (cron in `zone`; default the 1st at 08:00). */
  monthly?: string
  /** How often archived months are checked for backfill (cron; default hourly). */
  backfillCheck?: string
  /** Delay of the first check after start (default 60 s). */
  firstCheckMs?: number
}

export interface TickResult {
  generated: string[]
  regenerated: string[]
}

export class ReportScheduler {
  readonly #reports: Reports
  readonly #clock: Clock
  readonly #log: Logger
  readonly #zone: string
  readonly #o: ReportSchedulerOptions
  #jobs: Cron[] = []
  #first: NodeJS.Timeout | undefined
  #running: Promise<TickResult> | undefined

  constructor(reports: Reports, clock: Clock, log: Logger, o: ReportSchedulerOptions = {}) {
    this.#reports = reports
    this.#clock = clock
    this.#log = log
    this.#zone = o.zone ?? DEFAULT_TIMEZONE
    this.#o = o
  }

  /**
   * One check at the clock's time: the previous month's report once it is
   * due (08:00 on the 1st) and not archived yet; archived months outdated by
   * backfill. Runs one at a time.
   */
  tick(): Promise<TickResult> {
    this.#running ??= this.#tick().finally(() => {
      this.#running = undefined
    })
    return this.#running
  }

  async #tick(): Promise<TickResult> {
    const now = this.#clock.now()
    const result: TickResult = { generated: [], regenerated: [] }
    const current = monthOf(now, this.#zone)
    const due = parseLocal(`${current.id}-01 08:00:00`, this.#zone)!
    const prev = previousMonth(current)
    if (now >= due && (await this.#reports.archive.latestEntry('sync', prev.id, this.#zone)) === undefined) {
      await this.#reports.generateSync(prev.id, 'schedule', 'monthly schedule', this.#zone)
      result.generated.push(prev.id)
    }
    for (const { entry, rows } of await this.#reports.staleMonths(this.#zone)) {
      await this.#reports.generateSync(entry.period, 'backfill', `${rows} backfilled rows for the month landed after revision ${entry.revision}`, this.#zone)
      result.regenerated.push(entry.period)
    }
    return result
  }

  start(): void {
    const run = (): void => {
      this.tick().then(
        (r) => {
          if (r.generated.length > 0 || r.regenerated.length > 0) this.#log.info(r, 'scheduled reports done')
        },
        (err: unknown) => this.#log.error({ err: errorMessage(err) }, 'scheduled report generation failed'),
      )
    }
    this.#jobs = [
      new Cron(this.#o.monthly ?? '0 8 1 * *', { timezone: this.#zone, unref: true, protect: true }, run),
      new Cron(this.#o.backfillCheck ?? '17 * * * *', { timezone: this.#zone, unref: true, protect: true }, run),
    ]
    this.#first = setTimeout(run, this.#o.firstCheckMs ?? 60_000)
    this.#first.unref()
  }

  async stop(): Promise<void> {
    clearTimeout(this.#first)
    for (const j of this.#jobs) j.stop()
    this.#jobs = []
    await this.#running?.catch(() => undefined)
  }
}
