import { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { systemClock, type Clock } from '../../lib/clock.ts'
import { CitysyncError } from '../../lib/errors.ts'
import { bikeBalance, bikeOnlineRate, type BikeScope } from '../analytics/bike.ts'
import { type AnalyticsConfig, analyticsConfigFromEnv } from '../analytics/config.ts'
import { toCsv, wantsCsv } from '../analytics/csv.ts'
import { ferryLoad } from '../analytics/ferry.ts'
import { parkingOccupancy, parkingTurnover, type ParkingQuery } from '../analytics/parking.ts'
import { AnalyticsRefresher } from '../analytics/refresh.ts'
import { resolveScope } from '../analytics/scope.ts'
import { runAnalystSql } from '../analytics/sql-guard.ts'
import { GRANULARITIES, type Granularity, isoLocal, parseInstant, parseIntList, parsePeriod } from '../analytics/time-range.ts'
import { type ApiDeps } from '../app.ts'

// Analytics for analysts: parking occupancy and turnover, bike-share online
// rate and balance, ferry load, and read-only SQL. Figures and formulas:
// docs/metrics.md. Every figure answers as JSON, or CSV with `format=csv` or
// `Accept: text/csv`. The parking figures come from derived tables that the
// analytics refresher (started here, CITYSYNC_ANALYTICS_REFRESH) keeps current;
// `dataUntil` says up to when.

/** Settings for tests and embedding; otherwise from the environment. */
export type AnalyticsDeps = ApiDeps & { analytics?: Partial<AnalyticsConfig>; analyticsClock?: Clock }

const TEXT = { type: 'string', minLength: 1, maxLength: 200 } as const

const PERIOD_PROPS = {
  from: {
    type: 'string',
    maxLength: 40,
    description: 'start, inclusive: a local date (2026-11-01), a local date-time (2026-11-01T09:00) or an instant with offset (2026-11-01T01:00:00Z)',
    examples: ['2026-11-01'],
  },
  to: { type: 'string', maxLength: 40, description: 'end, exclusive, in the same forms', examples: ['2026-12-01'] },
  format: { type: 'string', enum: ['json', 'csv'], description: 'csv: the items as CSV (also with Accept: text/csv)' },
} as const

const PARKING_QUERY = {
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to'],
  properties: {
    lot: { ...TEXT, description: 'one car park (lotId)' },
    source: { ...TEXT, description: 'one source (sourceId)' },
    district: { ...TEXT, description: "car parks whose description names this district, or whose source's district it is" },
    operator: { ...TEXT, description: 'car parks of the sources of this operator' },
    ...PERIOD_PROPS,
    granularity: { type: 'string', enum: [...GRANULARITIES], default: 'day', description: 'bucket size; hour needs from/to on hours, day and month on dates' },
    by: { type: 'string', enum: ['all', 'lot'], default: 'all', description: 'all: one row per bucket for the car parks together; lot: one per car park and bucket' },
    hours: { type: 'string', maxLength: 100, pattern: '^[0-9,\\- ]+$', description: 'local hours of the day to keep, e.g. 9 or 7-9,17-19', examples: ['9'] },
    weekdays: { type: 'string', maxLength: 40, pattern: '^[0-9,\\- ]+$', description: 'ISO weekdays to keep (1 Monday .. 7 Sunday), e.g. 1-5', examples: ['1-5'] },
  },
} as const

interface ParkingQs {
  lot?: string
  source?: string
  district?: string
  operator?: string
  from: string
  to: string
  granularity: Granularity
  by: 'all' | 'lot'
  hours?: string
  weekdays?: string
  format?: 'json' | 'csv'
}

const RATE = { type: ['number', 'null'] } as const
const LOT_FIELDS = {
  sourceId: { type: 'string' },
  lotId: { type: 'string' },
  name: { type: ['string', 'null'] },
  district: { type: ['string', 'null'] },
} as const

const OCCUPANCY_ITEM = {
  $id: 'OccupancyItem',
  type: 'object',
  required: ['bucket', 'lotHours', 'spaceHours', 'vehicleHours', 'occupancyRate', 'peakOccupancyRate', 'peakHour', 'snapshotShare'],
  properties: {
    bucket: { type: 'string', description: '2026-11-02T09:00+08:00 (hour), 2026-11-02 (day) or 2026-11 (month), local' },
    ...LOT_FIELDS,
    lotHours: { type: 'number', description: 'hours covered by the occupancy series, summed over the car parks' },
    spaceHours: { type: 'number', description: '∫ capacity dt' },
    vehicleHours: { type: 'number', description: 'parking load: ∫ vehicles parked dt' },
    occupancyRate: { ...RATE, description: 'vehicleHours ÷ spaceHours (time-weighted)' },
    peakOccupancyRate: { ...RATE, description: 'highest occupancy rate of one hour in the bucket, the car parks together' },
    peakHour: { type: ['string', 'null'], description: 'start of that hour (the earliest when tied)' },
    snapshotShare: { ...RATE, description: 'share of lotHours whose occupancy came from free-space snapshots; the rest is from the running entry − exit count' },
    averageCapacity: { ...RATE, description: 'by=lot: spaceHours ÷ lotHours' },
    maxOccupied: { type: 'integer', description: 'by=lot: most vehicles parked at once' },
  },
} as const

const OCCUPANCY_EXAMPLE = {
  granularity: 'day',
  timezone: 'Asia/Shanghai',
  from: '2026-11-02T00:00:00+08:00',
  to: '2026-11-04T00:00:00+08:00',
  by: 'all',
  dataUntil: '2026-11-04T00:00:00+08:00',
  items: [
    { bucket: '2026-11-02', lotHours: 24, spaceHours: 96, vehicleHours: 18.666666666666668, occupancyRate: 0.19444444444444445, peakOccupancyRate: 0.7916666666666666, peakHour: '2026-11-02T09:00:00+08:00', snapshotShare: 0 },
    { bucket: '2026-11-03', lotHours: 24, spaceHours: 120, vehicleHours: 26.5, occupancyRate: 0.22083333333333333, peakOccupancyRate: 0.5, peakHour: '2026-11-03T16:00:00+08:00', snapshotShare: 0 },
  ],
  totals: { lotHours: 48, spaceHours: 216, vehicleHours: 45.166666666666664, occupancyRate: 0.20910493827160495, peakOccupancyRate: 0.7916666666666666, peakHour: '2026-11-02T09:00:00+08:00' },
}

const TURNOVER_ITEM = {
  $id: 'TurnoverItem',
  type: 'object',
  required: ['bucket', 'spaceDays', 'sessions', 'turnoverRate', 'matched', 'open', 'capped', 'entryOnly', 'exitOnly', 'entries', 'exits', 'averageDurationMinutes', 'revenueCents', 'revenueYuan'],
  properties: {
    bucket: { type: 'string' },
    ...LOT_FIELDS,
    spaceDays: { type: 'number', description: '∫ capacity dt, in days' },
    sessions: { type: 'integer', description: 'sessions starting in the bucket: every entry, and every exit without an entry' },
    turnoverRate: { ...RATE, description: 'sessions ÷ spaceDays: sessions per space per day' },
    matched: { type: 'integer', description: 'entry paired with its exit' },
    open: { type: 'integer', description: 'no exit yet, younger than the session cap' },
    capped: { type: 'integer', description: 'no exit within the cap: closed at entry + cap, flagged' },
    entryOnly: { type: 'integer', description: 'unmatched entry: the plate entered again before an exit, or has no plate key' },
    exitOnly: { type: 'integer', description: 'unmatched exit: no entry of the plate within the cap before it' },
    entries: { type: 'integer' },
    exits: { type: 'integer' },
    averageDurationMinutes: { ...RATE, description: 'mean duration of matched and capped sessions (capped count the cap)' },
    revenueCents: { type: 'integer', description: 'fees of the exits in the bucket, in fen' },
    revenueYuan: { type: 'number' },
  },
} as const

const TURNOVER_EXAMPLE = {
  granularity: 'day',
  timezone: 'Asia/Shanghai',
  from: '2026-11-02T00:00:00+08:00',
  to: '2026-11-04T00:00:00+08:00',
  by: 'all',
  dataUntil: '2026-11-04T00:00:00+08:00',
  items: [
    { bucket: '2026-11-02', spaceDays: 4, sessions: 8, turnoverRate: 2, matched: 5, open: 0, capped: 1, entryOnly: 0, exitOnly: 2, entries: 6, exits: 6, averageDurationMinutes: 398.3333333333333, revenueCents: 1200, revenueYuan: 12 },
    { bucket: '2026-11-03', spaceDays: 5, sessions: 7, turnoverRate: 1.4, matched: 2, open: 1, capped: 0, entryOnly: 2, exitOnly: 2, entries: 5, exits: 5, averageDurationMinutes: 345, revenueCents: 4700, revenueYuan: 47 },
  ],
  totals: { spaceDays: 9, sessions: 15, turnoverRate: 1.6666666666666667, averageDurationMinutes: 385, revenueCents: 5900, revenueYuan: 59 },
}

const CSV_CONTENT = { schema: { type: 'string', description: 'the items as CSV (RFC 4180, header row, UTF-8)' } } as const

function envelope(item: string, totals: Record<string, unknown>, example: unknown): Record<string, unknown> {
  return {
    200: {
      description: 'figures per bucket (and car park with by=lot)',
      content: {
        'application/json': {
          schema: {
            type: 'object',
            required: ['granularity', 'timezone', 'from', 'to', 'by', 'dataUntil', 'items', 'totals'],
            properties: {
              granularity: { type: 'string' },
              timezone: { type: 'string' },
              from: { type: 'string' },
              to: { type: 'string' },
              by: { type: 'string' },
              dataUntil: { type: ['string', 'null'], description: 'the derived tables hold figures up to this instant (latest refresh)' },
              items: { type: 'array', items: { $ref: `${item}#` } },
              totals: { type: 'object', properties: totals },
            },
            examples: [example],
          },
        },
        'text/csv': CSV_CONTENT,
      },
    },
    400: { $ref: 'Error#' },
    503: { $ref: 'Error#' },
  }
}

function curl(text: string): string {
  return `Example:\n\n\`\`\`sh\n${text}\n\`\`\``
}

/** JSON, or the items as CSV with these columns. */
function send(reply: FastifyReply, req: FastifyRequest, format: string | undefined, body: { items: readonly object[] } & Record<string, unknown>, columns: readonly string[]): unknown {
  if (wantsCsv(format, req.headers.accept)) return reply.type('text/csv; charset=utf-8').send(toCsv(columns, body.items as Record<string, unknown>[]))
  return reply.type('application/json; charset=utf-8').send(body)
}

const LOT_COLUMNS = ['sourceId', 'lotId', 'name', 'district']
const OCCUPANCY_COLUMNS = ['lotHours', 'spaceHours', 'vehicleHours', 'occupancyRate', 'peakOccupancyRate', 'peakHour', 'snapshotShare']
const TURNOVER_COLUMNS = ['spaceDays', 'sessions', 'turnoverRate', 'matched', 'open', 'capped', 'entryOnly', 'exitOnly', 'entries', 'exits', 'averageDurationMinutes', 'revenueCents', 'revenueYuan']

function occupancyColumns(byLot: boolean): string[] {
  return byLot ? ['bucket', ...LOT_COLUMNS, ...OCCUPANCY_COLUMNS, 'averageCapacity', 'maxOccupied'] : ['bucket', ...OCCUPANCY_COLUMNS]
}

function turnoverColumns(byLot: boolean): string[] {
  return byLot ? ['bucket', ...LOT_COLUMNS, ...TURNOVER_COLUMNS] : ['bucket', ...TURNOVER_COLUMNS]
}

/** Registered as a plugin (its schemas and the refresher belong to it). */
export function analyticsRoutes(app: FastifyInstance, deps: AnalyticsDeps): Promise<void> {
  const cfg: AnalyticsConfig = { ...analyticsConfigFromEnv(), ...deps.analytics }
  const clock = deps.analyticsClock ?? deps.ingest?.clock ?? systemClock
  const wh = deps.warehouse
  const tz = cfg.timezone

  const refresher = new AnalyticsRefresher({
    warehouse: wh,
    clock,
    log: deps.logger.child({ role: 'analytics' }),
    intervalMs: cfg.refreshIntervalMs,
    timezone: tz,
    sessionCapMs: cfg.sessionCapMs,
    chunkHours: cfg.refreshChunkHours,
  })
  refresher.start()
  app.addHook('onClose', async () => refresher.stop())

  app.addSchema(OCCUPANCY_ITEM)
  app.addSchema(TURNOVER_ITEM)

  async function dataUntil(): Promise<string | null> {
    const rows = await wh.query<{ ms: number }>('SELECT toUnixTimestamp64Milli(dataNow) AS ms FROM analytics_refresh_log ORDER BY version DESC LIMIT 1')
    return rows[0] === undefined ? null : isoLocal(rows[0].ms, tz)
  }

  async function parkingQuery(q: ParkingQs): Promise<ParkingQuery> {
    const period = parsePeriod(q.from, q.to, q.granularity, tz)
    return {
      scope: await resolveScope(deps.metadata, q),
      period,
      granularity: q.granularity,
      byLot: q.by === 'lot',
      hours: q.hours === undefined ? undefined : parseIntList('hours', q.hours, 0, 23),
      weekdays: q.weekdays === undefined ? undefined : parseIntList('weekdays', q.weekdays, 1, 7),
      timezone: tz,
      maxRows: cfg.maxRows,
    }
  }

  function head(q: { granularity: Granularity; by?: string }, p: ParkingQuery | { period: { fromMs: number; toMs: number } }): Record<string, unknown> {
    return { granularity: q.granularity, timezone: tz, from: isoLocal(p.period.fromMs, tz), to: isoLocal(p.period.toMs, tz), by: q.by ?? 'all' }
  }

  app.get<{ Querystring: ParkingQs }>(
    '/api/v1/analytics/parking/occupancy',
    {
      schema: {
        summary: 'Parking occupancy: time-weighted occupancy rate, parking load, peak hour',
        description:
          'Occupancy rate = vehicle-hours ÷ space-hours over the bucket (vehicles parked integrated over time, from free-space snapshots where a car park sends them, else from its running entry − exit count; capacity integrated over time, so a capacity change counts from when it happened). Peak = the busiest hour of the bucket. Which car parks are full at 9:00 on weekdays: `by=lot&hours=9&weekdays=1-5`.\n\n' +
          curl("curl -s 'localhost:3000/api/v1/analytics/parking/occupancy?district=横琴&from=2026-11-01&to=2026-12-01&granularity=day'\ncurl -s 'localhost:3000/api/v1/analytics/parking/occupancy?district=横琴&from=2026-11-01&to=2026-12-01&granularity=month&by=lot&hours=9&weekdays=1-5&format=csv'"),
        tags: ['analytics'],
        querystring: PARKING_QUERY,
        response: envelope('OccupancyItem', { lotHours: { type: 'number' }, spaceHours: { type: 'number' }, vehicleHours: { type: 'number' }, occupancyRate: RATE, peakOccupancyRate: RATE, peakHour: { type: ['string', 'null'] } }, OCCUPANCY_EXAMPLE),
      },
    },
    async (req, reply) => {
      const q = await parkingQuery(req.query)
      const { items, totals } = await parkingOccupancy(wh, q)
      return send(reply, req, req.query.format, { ...head(req.query, q), dataUntil: await dataUntil(), items, totals }, occupancyColumns(q.byLot))
    },
  )

  app.get<{ Querystring: ParkingQs }>(
    '/api/v1/analytics/parking/turnover',
    {
      schema: {
        summary: 'Parking turnover: sessions per space per day, durations, unmatched passages, revenue',
        description:
          'Turnover rate = sessions ÷ space-days (capacity integrated over the bucket, in days). Sessions pair each entry with the next passage of the same plate key at the car park when that is an exit within the session cap (24 h by default); entries and exits that pair with nothing are kept and counted (entryOnly, exitOnly), stays without an exit within the cap are closed at the cap and counted as capped. Revenue = fees of the exits in the bucket.\n\n' +
          curl("curl -s 'localhost:3000/api/v1/analytics/parking/turnover?lot=P001&from=2026-01-01&to=2027-01-01&granularity=month'"),
        tags: ['analytics'],
        querystring: PARKING_QUERY,
        response: envelope(
          'TurnoverItem',
          { spaceDays: { type: 'number' }, sessions: { type: 'integer' }, turnoverRate: RATE, averageDurationMinutes: RATE, revenueCents: { type: 'integer' }, revenueYuan: { type: 'number' } },
          TURNOVER_EXAMPLE,
        ),
      },
    },
    async (req, reply) => {
      const q = await parkingQuery(req.query)
      const { items, totals } = await parkingTurnover(wh, q)
      return send(reply, req, req.query.format, { ...head(req.query, q), dataUntil: await dataUntil(), items, totals }, turnoverColumns(q.byLot))
    },
  )

  async function bikeScope(q: { operator?: string; source?: string; district?: string }): Promise<BikeScope> {
    const s = await resolveScope(deps.metadata, { operator: q.operator, district: q.district })
    return { operator: q.operator, operatorSources: s.sources, source: q.source, districtSources: s.districtSources }
  }

  app.get<{ Querystring: { operator?: string; source?: string; district?: string; from: string; to: string; granularity: Granularity; format?: 'json' | 'csv' } }>(
    '/api/v1/analytics/bike/online-rate',
    {
      schema: {
        summary: 'Bike share: vehicles online ÷ fleet, per operator',
        description:
          "Online rate = Σ vehicles reporting ÷ Σ fleet size over the operator's status snapshots in the bucket (each snapshot: vehicles at stations plus free-floating vehicles reported, against the registered fleet). Also the bucket's lowest and highest snapshot rate and its last snapshot.\n\n" +
          curl("curl -s 'localhost:3000/api/v1/analytics/bike/online-rate?from=2026-11-21&to=2026-11-22&granularity=hour'"),
        tags: ['analytics'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['from', 'to'],
          properties: {
            operator: { ...TEXT, description: "the feed's operator id, or the operator named on sources" },
            source: TEXT,
            district: { ...TEXT, description: "sources whose district this is" },
            ...PERIOD_PROPS,
            granularity: { type: 'string', enum: [...GRANULARITIES], default: 'hour' },
          },
        },
        response: {
          200: {
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['granularity', 'timezone', 'from', 'to', 'items'],
                  properties: {
                    granularity: { type: 'string' },
                    timezone: { type: 'string' },
                    from: { type: 'string' },
                    to: { type: 'string' },
                    items: {
                      type: 'array',
                      items: {
                        type: 'object',
                        properties: {
                          bucket: { type: 'string' },
                          sourceId: { type: 'string' },
                          operatorId: { type: 'string' },
                          snapshots: { type: 'integer' },
                          onlineRate: RATE,
                          minOnlineRate: RATE,
                          maxOnlineRate: RATE,
                          vehiclesReporting: { type: 'integer' },
                          fleetSize: { type: 'integer' },
                          lastSnapshotAt: { type: 'string' },
                        },
                      },
                    },
                  },
                  examples: [
                    {
                      granularity: 'hour', timezone: 'Asia/Shanghai', from: '2026-11-21T08:00:00+08:00', to: '2026-11-21T10:00:00+08:00',
                      items: [
                        { bucket: '2026-11-21T08:00+08:00', sourceId: 'nanshan-bike', operatorId: 'nanshan-bikes', snapshots: 2, onlineRate: 0.9, minOnlineRate: 0.85, maxOnlineRate: 0.95, vehiclesReporting: 950, fleetSize: 1000, lastSnapshotAt: '2026-11-21T08:30:00+08:00' },
                      ],
                    },
                  ],
                },
              },
              'text/csv': CSV_CONTENT,
            },
          },
          400: { $ref: 'Error#' },
        },
      },
    },
    async (req, reply) => {
      const q = req.query
      const period = parsePeriod(q.from, q.to, q.granularity, tz)
      const items = await bikeOnlineRate(wh, { scope: await bikeScope(q), period, granularity: q.granularity, timezone: tz, maxRows: cfg.maxRows })
      return send(reply, req, q.format, { ...head(q, { period }), items }, ['bucket', 'sourceId', 'operatorId', 'snapshots', 'onlineRate', 'minOnlineRate', 'maxOnlineRate', 'vehiclesReporting', 'fleetSize', 'lastSnapshotAt'])
    },
  )

  app.get<{ Querystring: { operator?: string; source?: string; district?: string; at?: string; cellMeters?: number; accumulationAt?: number; shortageAt?: number; state?: string; format?: 'json' | 'csv' } }>(
    '/api/v1/analytics/bike/balance',
    {
      schema: {
        summary: 'Bike share: where vehicles pile up or run out',
        description:
          `Vehicles per square area (cellMeters, default ${cfg.bike.cellMeters} m) at \`at\` (default now): vehicles available at the area's stations plus free-floating vehicles, from reports within the last ${Math.round(cfg.bike.windowMs / 60_000)} minutes. An area is an accumulation with at least accumulationAt vehicles (default ${cfg.bike.accumulationAt}), a shortage when it has a reporting station and at most shortageAt vehicles (default ${cfg.bike.shortageAt}). The same thresholds raise alerts through the sync-health channels.\n\n` +
          curl("curl -s 'localhost:3000/api/v1/analytics/bike/balance?operator=nanshan-bikes&state=accumulation'"),
        tags: ['analytics'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            operator: TEXT,
            source: TEXT,
            district: TEXT,
            at: { type: 'string', maxLength: 40, description: 'snapshot time (default now)' },
            cellMeters: { type: 'integer', minimum: 50, maximum: 10000 },
            accumulationAt: { type: 'integer', minimum: 1 },
            shortageAt: { type: 'integer', minimum: 0 },
            state: { type: 'string', enum: ['accumulation', 'shortage', 'normal'], description: 'only areas in this state' },
            format: PERIOD_PROPS.format,
          },
        },
        response: {
          200: {
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    at: { type: 'string' },
                    thresholds: { type: 'object', properties: { cellMeters: { type: 'integer' }, accumulationAt: { type: 'integer' }, shortageAt: { type: 'integer' }, windowMinutes: { type: 'number' } } },
                    counts: { type: 'object', additionalProperties: { type: 'integer' } },
                    items: {
                      type: 'array',
                      items: {
                        type: 'object',
                        properties: {
                          sourceId: { type: 'string' }, operatorId: { type: 'string' }, area: { type: 'string' }, lat: { type: 'number' }, lon: { type: 'number' },
                          vehicles: { type: 'integer' }, stationVehicles: { type: 'integer' }, freeVehicles: { type: 'integer' }, stations: { type: 'integer' },
                          stationsReporting: { type: 'integer' }, docks: { type: ['integer', 'null'] }, state: { type: 'string' },
                        },
                      },
                    },
                  },
                  examples: [
                    {
                      at: '2026-11-21T08:30:00+08:00', thresholds: { cellMeters: 500, accumulationAt: 30, shortageAt: 0, windowMinutes: 10 }, counts: { accumulation: 1, shortage: 0, normal: 12 },
                      items: [{ sourceId: 'nanshan-bike', operatorId: 'nanshan-bikes', area: '5012:22570', lat: 22.5372, lon: 113.9322, vehicles: 41, stationVehicles: 12, freeVehicles: 29, stations: 1, stationsReporting: 1, docks: 20, state: 'accumulation' }],
                    },
                  ],
                },
              },
              'text/csv': CSV_CONTENT,
            },
          },
          400: { $ref: 'Error#' },
        },
      },
    },
    async (req, reply) => {
      const q = req.query
      const at = q.at === undefined ? clock.now() : parseInstant('at', q.at, tz)
      const thresholds = { ...cfg.bike, ...(q.cellMeters !== undefined && { cellMeters: q.cellMeters }), ...(q.accumulationAt !== undefined && { accumulationAt: q.accumulationAt }), ...(q.shortageAt !== undefined && { shortageAt: q.shortageAt }) }
      const areas = await bikeBalance(wh, { scope: await bikeScope(q), at, thresholds })
      const counts: Record<string, number> = { accumulation: 0, shortage: 0, normal: 0 }
      for (const a of areas) counts[a.state]! += 1
      const items = q.state === undefined ? areas : areas.filter((a) => a.state === q.state)
      return send(
        reply,
        req,
        q.format,
        { at: isoLocal(at, tz), thresholds: { cellMeters: thresholds.cellMeters, accumulationAt: thresholds.accumulationAt, shortageAt: thresholds.shortageAt, windowMinutes: thresholds.windowMs / 60_000 }, counts, items },
        ['sourceId', 'operatorId', 'area', 'lat', 'lon', 'vehicles', 'stationVehicles', 'freeVehicles', 'stations', 'stationsReporting', 'docks', 'state'],
      )
    },
  )

  app.get<{ Querystring: { operator?: string; source?: string; terminal?: string; route?: string; sailing?: string; from: string; to: string; format?: 'json' | 'csv' } }>(
    '/api/v1/analytics/ferry/load',
    {
      schema: {
        summary: 'Ferry load factor and check-in rate per sailing',
        description:
          'Per sailing departing (scheduled) in the period: passengers = tickets whose latest state is sold or changed onto this sailing (refunded and changed-away tickets do not count), load factor = passengers ÷ seats, check-in rate = tickets checked in for the sailing ÷ passengers. Totals over the sailings with a known seat count.\n\n' +
          curl("curl -s 'localhost:3000/api/v1/analytics/ferry/load?terminal=JZG&from=2026-11-21&to=2026-11-22'"),
        tags: ['analytics'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['from', 'to'],
          properties: { operator: TEXT, source: TEXT, terminal: TEXT, route: TEXT, sailing: TEXT, ...PERIOD_PROPS },
        },
        response: {
          200: {
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    timezone: { type: 'string' },
                    from: { type: 'string' },
                    to: { type: 'string' },
                    items: {
                      type: 'array',
                      items: {
                        type: 'object',
                        properties: {
                          sourceId: { type: 'string' }, sailingId: { type: 'string' }, terminalId: { type: 'string' }, route: { type: 'string' }, vesselName: { type: ['string', 'null'] },
                          scheduledDeparture: { type: 'string' }, actualDeparture: { type: ['string', 'null'] }, status: { type: 'string' }, seats: { type: ['integer', 'null'] },
                          passengers: { type: 'integer' }, refunded: { type: 'integer' }, checkedIn: { type: 'integer' }, loadFactor: RATE, checkInRate: RATE,
                        },
                      },
                    },
                    totals: {
                      type: 'object',
                      properties: { sailings: { type: 'integer' }, seats: { type: 'integer' }, passengers: { type: 'integer' }, checkedIn: { type: 'integer' }, loadFactor: RATE, checkInRate: RATE },
                    },
                  },
                  examples: [
                    {
                      timezone: 'Asia/Shanghai', from: '2026-11-21T00:00:00+08:00', to: '2026-11-22T00:00:00+08:00',
                      items: [
                        { sourceId: 'hengqin-ferry', sailingId: 'JZG-SK-20261121-0830', terminalId: 'JZG', route: '九洲港-蛇口', vesselName: '海鸥1号', scheduledDeparture: '2026-11-21T08:30:00+08:00', actualDeparture: '2026-11-21T08:32:00+08:00', status: 'departed', seats: 200, passengers: 150, refunded: 4, checkedIn: 141, loadFactor: 0.75, checkInRate: 0.94 },
                      ],
                      totals: { sailings: 1, seats: 200, passengers: 150, checkedIn: 141, loadFactor: 0.75, checkInRate: 0.94 },
                    },
                  ],
                },
              },
              'text/csv': CSV_CONTENT,
            },
          },
          400: { $ref: 'Error#' },
        },
      },
    },
    async (req, reply) => {
      const q = req.query
      const period = { ...parsePeriod(q.from, q.to, 'hour', tz) }
      const scope = await resolveScope(deps.metadata, { operator: q.operator, source: q.source })
      const { items, totals } = await ferryLoad(wh, { scope: { sources: scope.sources, terminal: q.terminal, route: q.route, sailing: q.sailing }, period, timezone: tz, maxRows: cfg.maxRows })
      return send(
        reply,
        req,
        q.format,
        { timezone: tz, from: isoLocal(period.fromMs, tz), to: isoLocal(period.toMs, tz), items, totals },
        ['sourceId', 'sailingId', 'terminalId', 'route', 'vesselName', 'scheduledDeparture', 'actualDeparture', 'status', 'seats', 'passengers', 'refunded', 'checkedIn', 'loadFactor', 'checkInRate'],
      )
    },
  )

  app.post<{ Body: { sql: string; format?: 'json' | 'csv' } }>(
    '/api/v1/analytics/sql',
    {
      schema: {
        summary: 'Read-only SQL over the analytics views (analysts)',
        description:
          'Off unless CITYSYNC_ANALYST_SQL=on; for the analyst and admin roles (permission analytics:sql: a login or an API token). One SELECT over the analytics_* views, run with readonly = 1 and the limits max_execution_time, max_result_rows and max_memory_usage (CITYSYNC_ANALYST_SQL_MAX_SECONDS, _MAX_ROWS, _MAX_MEMORY). No SETTINGS, table functions or functions that reach outside the data. On a ClickHouse server, give analysts a read-only user instead (docs/metrics.md).\n\n' +
          curl(`curl -s -X POST localhost:3000/api/v1/analytics/sql -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\\n  -d '{"sql": "SELECT lotId, day, occupancyRate FROM analytics_parking_lot_day WHERE day >= \\'2026-11-01\\' ORDER BY occupancyRate DESC LIMIT 10"}'`),
        tags: ['analytics'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['sql'],
          properties: { sql: { type: 'string', minLength: 1, maxLength: 100000 }, format: { type: 'string', enum: ['json', 'csv'] } },
          examples: [{ sql: 'SELECT lotId, sum(sessions) AS sessions FROM analytics_parking_lot_day GROUP BY lotId ORDER BY sessions DESC LIMIT 5' }],
        },
        response: {
          200: {
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['columns', 'rows', 'rowCount', 'elapsedMs'],
                  properties: {
                    columns: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, type: { type: 'string' } } } },
                    rows: { type: 'array', items: { type: 'object', additionalProperties: true } },
                    rowCount: { type: 'integer' },
                    elapsedMs: { type: 'integer' },
                  },
                  examples: [{ columns: [{ name: 'lotId', type: 'String' }, { name: 'sessions', type: 'UInt64' }], rows: [{ lotId: 'P001', sessions: 15 }], rowCount: 1, elapsedMs: 42 }],
                },
              },
              'text/csv': CSV_CONTENT,
            },
          },
          400: { $ref: 'Error#' },
          401: { $ref: 'Error#' },
          404: { $ref: 'Error#' },
          422: { $ref: 'Error#' },
        },
      },
    },
    async (req, reply) => {
      if (!cfg.sql.enabled) throw new CitysyncError('CITYSYNC_ERR_ANALYTICS_SQL_DISABLED', ['CITYSYNC_ANALYST_SQL=on'])
      const r = await runAnalystSql(wh, req.body.sql, cfg.sql)
      req.log.info({ sql: req.body.sql.slice(0, 500), rows: r.rows.length, elapsedMs: r.elapsedMs }, 'analyst sql')
      if (wantsCsv(req.body.format, req.headers.accept)) return reply.type('text/csv; charset=utf-8').send(toCsv(r.columns.map((c) => c.name), r.rows))
      return reply.type('application/json; charset=utf-8').send({ columns: r.columns, rows: r.rows, rowCount: r.rows.length, elapsedMs: r.elapsedMs })
    },
  )
  return Promise.resolve()
}
