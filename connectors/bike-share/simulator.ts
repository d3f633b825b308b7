// A bike-share operator over real HTTP, for demos and tests: a GBFS feed in
// both the 2.3 and the 3.0 layout and the operator's trips (orders) API, with
// ground truth and the quirks real feeds have. Deterministic from a seed.
//
// Wire contract:
//   GET /gbfs/2.3/gbfs.json                 data: { zh: { feeds }, en: { feeds } }
//   GET /gbfs/2.3/<zh|en>/<feed>.json       system_information, vehicle_types, station_information,
//                                           station_status, free_bike_status (vehicles not at a station)
//   GET /gbfs/3.0/gbfs.json                 data: { feeds }
//   GET /gbfs/3.0/<feed>.json               ... vehicle_status (every vehicle not in use, docked ones with station_id)
//   GET /openapi/v1/bike/orders?cursor=C&limit=N   { code, msg, data: { list, nextCursor, hasMore } }
//   POST /_sim/outage?on=1&feeds=a,b&mode=503|reset   outages on command (feeds: gbfs file names, "gbfs", "trips")
// 2.3 times are POSIX seconds, 3.0 times RFC 3339 in +08:00; trip times are
// naive local "YYYY-MM-DD HH:mm:ss" in the simulator's zone, trip coordinates GCJ-02.
//
// The world: stations (parking areas with a capacity, 电子围栏) and a fleet of
// vehicles that park at stations or anywhere (free-floating) and ride trips.
// A new snapshot is published every `periodS` seconds of clock time; the state
// is advanced lazily to clock.now() on each request, so the same seed and clock
// readings always give the same snapshots, however requests are spread.
//
// Quirks, at the snapshot indexes given (index 0 is the first snapshot):
//   msEpochAt        2.3 status files write epoch milliseconds instead of seconds
//   unknownAt        one station's vehicle count and one vehicle's lat are "unknown"
//   duplicatesAt     a station and a vehicle listed twice (exact copies), and a
//                    vehicle listed again with a different position
//   aboveCapacityAt  a station reports more vehicles than its capacity
//   staleAt          the snapshot repeats the previous one, last_updated and all
//   stationAddedAt   a station opens (station_information changes)
// Vehicle ids in the GBFS files rotate after every trip; last_reported only
// moves when a vehicle or station reports, so unchanged items repeat exactly.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { type AddressInfo } from 'node:net'
import { type Clock, systemClock } from '../../lib/clock.ts'
import { formatLocal } from '../../lib/local-time.ts'

const MINUTE = 60_000

export const SIM_LAYOUTS = ['2.3', '3.0'] as const
export type SimLayout = (typeof SIM_LAYOUTS)[number]

export const SIM_FEEDS = ['system_information', 'vehicle_types', 'station_information', 'station_status', 'free_bike_status', 'vehicle_status'] as const
export type SimFeed = (typeof SIM_FEEDS)[number]

const SNAPSHOT_QUIRKS = ['msEpochAt', 'unknownAt', 'duplicatesAt', 'aboveCapacityAt', 'staleAt', 'stationAddedAt'] as const
type SnapshotQuirk = (typeof SNAPSHOT_QUIRKS)[number]

export interface SimQuirks {
  msEpochAt?: readonly number[]
  unknownAt?: readonly number[]
  duplicatesAt?: readonly number[]
  aboveCapacityAt?: readonly number[]
  staleAt?: readonly number[]
  stationAddedAt?: readonly number[]
  /** For long runs: besides the indexes above, every Nth snapshot carries each quirk, staggered (0 = off). */
  every?: number
  /** Fraction of trips uploaded late, flagged as re-uploads (补传). */
  lateTripRate?: number
  /** Fraction of trips served with a defect the connector must reject. */
  badTripRate?: number
  /** Fraction of trips served twice (the same order again, later). */
  duplicateTripRate?: number
}

export interface BikeSimulatorOptions {
  seed?: number
  clock?: Clock
  /** Zone of the trips API's naive local times (default Asia/Shanghai). */
  timezone?: string
  stations?: number
  fleet?: number
  /** Seconds between snapshots; the ttl of the status files (default 60). */
  periodS?: number
  /** First snapshot (default clock.now() at construction). */
  startAt?: number
  systemId?: string
  appKey?: string
  quirks?: SimQuirks
}

export interface PublishedStation {
  id: string
  available: number
  disabled: number
  docks: number
  installed: boolean
  renting: boolean
  returning: boolean
  reportedAt: number
}

export interface PublishedVehicle {
  /** GBFS id: rotates after every trip. */
  id: string
  lat: number | null
  lon: number | null
  stationId: string | null
  typeId: string
  reserved: boolean
  disabled: boolean
  reportedAt: number
}

/** What one snapshot publishes, before rendering, with the quirks it carries. */
export interface SnapshotContent {
  /** The snapshot that first published this content (a stale snapshot points back). */
  index: number
  at: number
  stations: PublishedStation[]
  vehicles: PublishedVehicle[]
  msEpoch: boolean
  unknownStation: string | null
  unknownVehicle: string | null
  duplicateStation: string | null
  duplicateVehicle: string | null
  conflictVehicle: string | null
  aboveCapacity: string | null
}

export interface SimStation {
  id: string
  nameZh: string
  nameEn: string
  lat: number
  lon: number
  capacity: number
  /** Under maintenance: installed, neither renting nor returning. */
  closed: boolean
}

export const TRIP_DEFECTS = ['missing_order_no', 'unknown_fee', 'unknown_distance', 'end_before_start'] as const
export type TripDefect = (typeof TRIP_DEFECTS)[number]

export const TRIP_DEFECT_CODES: Record<TripDefect, string> = {
  missing_order_no: 'missing_field',
  unknown_fee: 'invalid_value',
  unknown_distance: 'invalid_value',
  end_before_start: 'invalid_value',
}

export interface TruthTrip {
  orderNo: string
  bikeNo: string
  startedAt: number
  endedAt: number
  /** GCJ-02, as the trips API publishes them. */
  start: { lat: number; lon: number }
  end: { lat: number; lon: number }
  durationS: number
  distanceM: number
  feeCents: number
  isReupload: boolean
  /** When the platform received it; the API serves trips in this order. */
  uploadAt: number
  defect: TripDefect | null
  /** Served a second time (an exact repeat). */
  repeated: boolean
}

/** Ground truth for one layout's GBFS files over what was actually served to it. */
export interface SimExpectation {
  stations: number
  stationStatus: number
  vehicleStatus: number
  /** Rejections by code: the connector's (invalid_value) and the pipeline's (duplicate_record). */
  deadLetter: Record<string, number>
  /** Distinct GBFS vehicle ids seen: more than the fleet, since ids rotate. */
  distinctVehicleIds: number
}

/** Ground truth for the trips API over everything it serves now. */
export interface TripsExpectation {
  trips: number
  backfillTrips: number
  /** Served twice; the second copy is dropped by the pipeline as an exact repeat. */
  repeats: number
  deadLetter: Record<string, number>
}

interface Vehicle {
  bikeNo: string
  gbfsId: string
  typeId: string
  riding: { start: number; end: number; from: { lat: number; lon: number }; tripNo: number } | null
  station: number // -1 when free-floating or riding
  lat: number
  lon: number
  disabled: boolean
  reserved: boolean
  reportedAt: number
}

interface StationState {
  reported: PublishedStation
}

const CENTER = { lat: 22.5333, lon: 113.9304 } // Nanshan, Shenzhen (WGS84)

const STATION_NAMES: readonly (readonly [string, string])[] = [
  ['深圳湾公园地铁站', 'Shenzhen Bay Park Metro'],
  ['后海地铁站D口', 'Houhai Metro Exit D'],
  ['科技园地铁站', 'Hi-Tech Park Metro'],
  ['海岸城', 'Coastal City'],
  ['南山书城', 'Nanshan Book City'],
  ['深圳大学南门', 'Shenzhen University South Gate'],
  ['蛇口港', 'Shekou Port'],
  ['前海湾', 'Qianhai Bay'],
  ['世界之窗', 'Window of the World'],
  ['白石洲', 'Baishizhou'],
  ['桃园地铁站', 'Taoyuan Metro'],
  ['南头古城', 'Nantou Ancient Town'],
]

/** sfc32: small, fast, fully determined by the seed. */
function createRandom(seed: number): () => number {
  let a = 0x9e3779b9 ^ seed
  let b = 0x243f6a88 + seed
  let c = 0xb7e15162 ^ (seed << 7)
  let d = 1
  const next = (): number => {
    a >>>= 0
    b >>>= 0
    c >>>= 0
    d >>>= 0
    const t = (a + b + d) >>> 0
    d = (d + 1) >>> 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) >>> 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) >>> 0
    return t / 4294967296
  }
  for (let i = 0; i < 12; i++) next()
  return next
}

/**
 * WGS84 -> GCJ-02, the offset Chinese map services apply by law; operator
 * platforms publish positions in it. The standard published transform
 * (Krasovsky 1940 ellipsoid), accurate to a metre or so.
 */
export function wgs84ToGcj02(lat: number, lon: number): { lat: number; lon: number } {
  const a = 6378245.0
  const ee = 0.006693421622965943
  const x = lon - 105.0
  const y = lat - 35.0
  let dLat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x))
  dLat += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0
  dLat += ((20.0 * Math.sin(y * Math.PI) + 40.0 * Math.sin((y / 3.0) * Math.PI)) * 2.0) / 3.0
  dLat += ((160.0 * Math.sin((y / 12.0) * Math.PI) + 320 * Math.sin((y * Math.PI) / 30.0)) * 2.0) / 3.0
  let dLon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x))
  dLon += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0
  dLon += ((20.0 * Math.sin(x * Math.PI) + 40.0 * Math.sin((x / 3.0) * Math.PI)) * 2.0) / 3.0
  dLon += ((150.0 * Math.sin((x / 12.0) * Math.PI) + 300.0 * Math.sin((x / 30.0) * Math.PI)) * 2.0) / 3.0
  const radLat = (lat / 180.0) * Math.PI
  let magic = Math.sin(radLat)
  magic = 1 - ee * magic * magic
  const sqrtMagic = Math.sqrt(magic)
  dLat = (dLat * 180.0) / (((a * (1 - ee)) / (magic * sqrtMagic)) * Math.PI)
  dLon = (dLon * 180.0) / ((a / sqrtMagic) * Math.cos(radLat) * Math.PI)
  return { lat: round6(lat + dLat), lon: round6(lon + dLon) }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n))
}

function round6(n: number): number {
  return Math.round(n * 1e6) / 1e6
}

function haversineM(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const r = 6_371_000
  const dLat = ((b.lat - a.lat) * Math.PI) / 180
  const dLon = ((b.lon - a.lon) * Math.PI) / 180
  const h = Math.sin(dLat / 2) ** 2 + Math.cos((a.lat * Math.PI) / 180) * Math.cos((b.lat * Math.PI) / 180) * Math.sin(dLon / 2) ** 2
  return 2 * r * Math.asin(Math.sqrt(h))
}

// The simulated operator writes RFC 3339 in China Standard Time (no DST).
const CST_OFFSET = 8 * 3_600_000

/** RFC 3339 in +08:00, optionally with microseconds as Python producers write them. */
function rfc3339(ms: number, micro = false): string {
  const local = new Date(ms + CST_OFFSET).toISOString().slice(0, 19)
  return `${local}${micro ? `.${String(ms % 1000).padStart(3, '0')}000` : ''}+08:00`
}

export class BikeShareSimulator {
  readonly seed: number
  readonly timezone: string
  readonly periodMs: number
  readonly origin: number
  readonly systemId: string
  readonly fleetSize: number
  readonly stations: SimStation[] = []
  private readonly clock: Clock
  private readonly appKey: string | undefined
  private readonly quirks: Required<SimQuirks>
  private readonly rand: () => number
  private readonly vehicles: Vehicle[] = []
  private readonly stationState: StationState[] = []
  /** Distinct published contents, and for each snapshot the content it publishes. */
  private readonly contents: SnapshotContent[] = []
  private readonly published: number[] = []
  /** station_information versions: how many stations were open, from which snapshot. */
  private readonly stationVersions: { from: number; count: number }[] = []
  private readonly trips: TruthTrip[] = []
  /** Orders in upload order: indexes into trips (a repeated trip appears twice). */
  private readonly orders: number[] = []
  private readonly pendingUploads: { tripIndex: number; at: number }[] = []
  private tripSeq = 0
  private server: Server | null = null
  private baseUrl: string | null = null
  private readonly served = new Map<string, Set<number>>()
  private outageFeeds: Set<string> | 'all' | null = null
  private outageMode: '503' | 'reset' = '503'
  private readonly requestCounts = new Map<string, number>()

  constructor(o: BikeSimulatorOptions = {}) {
    this.seed = o.seed ?? 1
    this.clock = o.clock ?? systemClock
    this.timezone = o.timezone ?? 'Asia/Shanghai'
    this.periodMs = (o.periodS ?? 60) * 1000
    this.origin = Math.floor((o.startAt ?? this.clock.now()) / 1000) * 1000
    this.systemId = o.systemId ?? 'citysim'
    this.appKey = o.appKey
    const q = o.quirks ?? {}
    this.quirks = {
      msEpochAt: q.msEpochAt ?? [],
      unknownAt: q.unknownAt ?? [],
      duplicatesAt: q.duplicatesAt ?? [],
      aboveCapacityAt: q.aboveCapacityAt ?? [],
      staleAt: q.staleAt ?? [],
      stationAddedAt: q.stationAddedAt ?? [],
      every: q.every ?? 0,
      lateTripRate: q.lateTripRate ?? 0,
      badTripRate: q.badTripRate ?? 0,
      duplicateTripRate: q.duplicateTripRate ?? 0,
    }
    this.rand = createRandom(this.seed)
    const stationCount = Math.min(o.stations ?? 8, STATION_NAMES.length)
    for (let i = 0; i < STATION_NAMES.length; i++) {
      const [nameZh, nameEn] = STATION_NAMES[i]!
      this.stations.push({
        id: `NS${String(i + 1).padStart(3, '0')}`,
        nameZh,
        nameEn,
        lat: round6(CENTER.lat + (this.rand() - 0.5) * 0.05),
        lon: round6(CENTER.lon + (this.rand() - 0.5) * 0.06),
        capacity: 10 + Math.floor(this.rand() * 4) * 5,
        closed: i === 2,
      })
    }
    this.stationVersions.push({ from: 0, count: stationCount })
    this.fleetSize = o.fleet ?? 60
    for (let i = 0; i < this.fleetSize; i++) {
      const parkedAt = i % 2 === 0 ? i % stationCount : -1
      const s = parkedAt >= 0 ? this.stations[parkedAt]! : null
      this.vehicles.push({
        bikeNo: `86${String(10_000_000 + i * 7919).slice(-8)}`,
        gbfsId: this.newGbfsId(),
        typeId: i % 3 === 0 ? 'ebike' : 'bike',
        riding: null,
        station: parkedAt,
        lat: s?.lat ?? round6(CENTER.lat + (this.rand() - 0.5) * 0.05),
        lon: s?.lon ?? round6(CENTER.lon + (this.rand() - 0.5) * 0.06),
        disabled: i % 17 === 5,
        reserved: false,
        reportedAt: this.origin,
      })
    }
  }

  get url(): string {
    if (this.baseUrl === null) throw new Error('simulator is not started')
    return this.baseUrl
  }

  /** gbfs.json of a layout, for a source's gbfsUrl. */
  gbfsUrl(layout: SimLayout): string {
    return `${this.url}/gbfs/${layout}/gbfs.json`
  }

  /** Requests answered per path, for tests. */
  requests(path: string): number {
    return this.requestCounts.get(path) ?? 0
  }

  /** Outages on command: every feed, or the named ones ("gbfs", a file name, "trips"); false ends it. */
  setOutage(on: boolean, feeds?: readonly string[], mode: '503' | 'reset' = '503'): void {
    this.outageFeeds = !on ? null : feeds === undefined || feeds.length === 0 ? 'all' : new Set(feeds)
    this.outageMode = mode
  }

  /** Index of the newest snapshot at the clock's time. */
  currentIndex(): number {
    return Math.max(0, Math.floor((this.clock.now() - this.origin) / this.periodMs))
  }

  /** Builds every snapshot up to the clock's time. */
  advance(): void {
    const target = this.currentIndex()
    while (this.published.length <= target) this.step(this.published.length)
  }

  /** The content snapshot k publishes (after advance). */
  snapshot(k: number): SnapshotContent {
    this.advance()
    const c = this.published[k]
    if (c === undefined) throw new Error(`snapshot ${k} is not published yet`)
    return this.contents[c]!
  }

  /** Trips the API serves at the clock's time, in upload order (repeats once). */
  servedTrips(): TruthTrip[] {
    this.advance()
    return this.orders.map((i) => this.trips[i]!)
  }

  /**
   * Snapshots whose content a file served to a layout so far, by the index of
   * the snapshot that first published it (a stale repeat counts as the one it
   * repeats; for station_information, the snapshot its version started at).
   */
  servedContents(layout: SimLayout, feed: SimFeed): number[] {
    return [...(this.served.get(`${layout}/${feed}`) ?? [])].sort((a, b) => a - b)
  }

  /** Number of stations open at snapshot k. */
  stationCount(k: number): number {
    let n = this.stationVersions[0]!.count
    for (const v of this.stationVersions) if (v.from <= k) n = v.count
    return n
  }

  /** Vehicles reporting in one content: station counts (valid, once per station) plus valid vehicles not at a station. */
  static vehiclesReporting(c: SnapshotContent): number {
    let n = 0
    for (const s of c.stations) if (s.id !== c.unknownStation) n += s.available + s.disabled
    for (const v of c.vehicles) if (v.stationId === null && v.id !== c.unknownVehicle) n++
    return n
  }

  /**
   * What a connector that read this layout should have landed, from what was
   * served to it: every valid item once (an item repeated unchanged in a later
   * snapshot is the same record), every defect as its rejection.
   */
  expected(layout: SimLayout): SimExpectation {
    this.advance()
    const vehicleFeed: SimFeed = layout === '2.3' ? 'free_bike_status' : 'vehicle_status'
    const statusContents = this.servedContents(layout, 'station_status').map((k) => this.snapshot(k))
    const vehicleContents = this.servedContents(layout, vehicleFeed).map((k) => this.snapshot(k))
    const dead: Record<string, number> = {}
    const bump = (code: string): void => {
      dead[code] = (dead[code] ?? 0) + 1
    }
    const stationKeys = new Set<string>()
    for (const c of statusContents) {
      for (const s of c.stations) if (s.id !== c.unknownStation) stationKeys.add(`${s.id}|${s.reportedAt}`)
      if (c.unknownStation !== null) bump('invalid_value')
    }
    const vehicleKeys = new Set<string>()
    const ids = new Set<string>()
    for (const c of vehicleContents) {
      for (const v of c.vehicles) {
        if (layout === '2.3' && v.stationId !== null) continue
        if (v.id === c.unknownVehicle) continue
        vehicleKeys.add(`${v.id}|${v.reportedAt}`)
        ids.add(v.id)
      }
      if (c.unknownVehicle !== null) bump('invalid_value')
      if (c.conflictVehicle !== null) bump('duplicate_record')
    }
    const infoVersions = this.servedContents(layout, 'station_information')
    let stations = 0
    for (const k of infoVersions) stations += this.stationCount(k)
    return {
      stations,
      stationStatus: stationKeys.size,
      vehicleStatus: vehicleKeys.size,
      deadLetter: dead,
      distinctVehicleIds: ids.size,
    }
  }

  /** What a connector that read the whole trips API should have landed and rejected. */
  expectedTrips(): TripsExpectation {
    const out: TripsExpectation = { trips: 0, backfillTrips: 0, repeats: 0, deadLetter: {} }
    const seen = new Set<TruthTrip>()
    for (const t of this.servedTrips()) {
      if (seen.has(t)) {
        out.repeats++
        continue
      }
      seen.add(t)
      if (t.defect !== null) {
        out.deadLetter[TRIP_DEFECT_CODES[t.defect]] = (out.deadLetter[TRIP_DEFECT_CODES[t.defect]] ?? 0) + 1
        continue
      }
      out.trips++
      if (t.isReupload) out.backfillTrips++
    }
    return out
  }

  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    if (this.server !== null) return this.url
    const server = createServer((req, res) => {
      try {
        this.handle(req, res)
      } catch (err) {
        if (!res.headersSent) send(res, 500, { code: 500, msg: String(err), data: null })
        else res.destroy()
      }
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.server = server
    this.baseUrl = `http://${host}:${(server.address() as AddressInfo).port}`
    return this.baseUrl
  }

  async stop(): Promise<void> {
    const server = this.server
    if (server === null) return
    this.server = null
    this.baseUrl = null
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }

  // --- simulation -----------------------------------------------------------

  private newGbfsId(): string {
    let id = ''
    for (let i = 0; i < 4; i++) id += Math.floor(this.rand() * 0x10000).toString(16).padStart(4, '0')
    return id
  }

  private has(quirk: SnapshotQuirk, k: number): boolean {
    if (this.quirks[quirk].includes(k)) return true
    const every = this.quirks.every
    // Staggered so that quirks rarely coincide; a station opens far less often.
    if (every <= 0 || k === 0) return false
    const period = quirk === 'stationAddedAt' ? every * 50 : every
    return k % period === (SNAPSHOT_QUIRKS.indexOf(quirk) * 3 + 1) % period
  }

  private step(k: number): void {
    const at = this.origin + k * this.periodMs
    if (k > 0) this.move(at - this.periodMs, at, k)
    if (this.has('stationAddedAt', k)) {
      const count = this.stationCount(k) + 1
      if (count <= this.stations.length) this.stationVersions.push({ from: k, count })
    }
    const open = this.stationCount(k)

    // Stations report most of the time; when they do not, their last report stands.
    for (let i = 0; i < open; i++) {
      const s = this.stations[i]!
      const prev = this.stationState[i]
      if (prev !== undefined && k > 0 && this.rand() < 0.2) continue
      let available = 0
      let disabled = 0
      for (const v of this.vehicles) {
        if (v.station !== i || v.riding !== null) continue
        if (v.disabled) disabled++
        else if (!v.reserved) available++
      }
      this.stationState[i] = {
        reported: {
          id: s.id,
          available,
          disabled,
          docks: Math.max(0, s.capacity - available - disabled),
          installed: true,
          renting: !s.closed,
          returning: !s.closed,
          reportedAt: at,
        },
      }
    }
    const above = this.has('aboveCapacityAt', k) ? (k + 1) % open : -1
    if (above >= 0) {
      const s = this.stations[above]!
      this.stationState[above] = { reported: { ...this.stationState[above]!.reported, available: s.capacity + 3, docks: 0, reportedAt: at } }
    }

    if (this.has('staleAt', k) && k > 0) {
      this.published.push(this.published[k - 1]!)
      this.uploadTrips(at)
      return
    }

    // Idle vehicles report every fifth snapshot, staggered; any change reports at once.
    const listed: PublishedVehicle[] = []
    for (let i = 0; i < this.vehicles.length; i++) {
      const v = this.vehicles[i]!
      if (v.riding !== null) continue
      if ((k + i) % 5 === 0) v.reportedAt = Math.max(v.reportedAt, at)
      const station = v.station >= 0 ? this.stations[v.station]!.id : null
      listed.push({
        id: v.gbfsId,
        lat: station === null ? v.lat : null,
        lon: station === null ? v.lon : null,
        stationId: station,
        typeId: v.typeId,
        reserved: v.reserved,
        disabled: v.disabled,
        reportedAt: v.reportedAt,
      })
    }
    const stations = this.stationState.slice(0, open).map((s) => s.reported)
    const free = listed.filter((v) => v.stationId === null)
    const unknown = this.has('unknownAt', k)
    const dups = this.has('duplicatesAt', k)
    const content: SnapshotContent = {
      index: k,
      at,
      stations,
      vehicles: listed,
      msEpoch: this.has('msEpochAt', k),
      unknownStation: unknown ? stations[k % stations.length]!.id : null,
      unknownVehicle: unknown ? (free[0]?.id ?? null) : null,
      duplicateStation: dups ? stations[(k + 2) % stations.length]!.id : null,
      duplicateVehicle: dups ? (free[2]?.id ?? null) : null,
      conflictVehicle: dups ? (free[1]?.id ?? null) : null,
      aboveCapacity: above >= 0 ? this.stations[above]!.id : null,
    }
    this.contents.push(content)
    this.published.push(this.contents.length - 1)
    this.uploadTrips(at)
  }

  /** Trips between two snapshots: starts, ends (with id rotation), reports. */
  private move(from: number, to: number, k: number): void {
    const open = this.stationCount(k - 1)
    for (const v of this.vehicles) {
      if (v.riding !== null && v.riding.end <= to) this.endTrip(v, open)
    }
    for (const v of this.vehicles) {
      if (v.riding !== null) continue
      const roll = this.rand()
      if (v.disabled) {
        if (roll < 0.05) {
          v.disabled = false
          v.reportedAt = to
        }
        continue
      }
      if (roll < 0.01) {
        v.disabled = true
        v.reportedAt = to
        continue
      }
      if (roll < 0.03) {
        v.reserved = !v.reserved
        v.reportedAt = to
        continue
      }
      if (v.reserved || roll > 0.15) continue
      // Starts at a whole second within the period; rides 3 to 30 minutes.
      const start = from + 1000 * Math.floor(this.rand() * (this.periodMs / 1000 - 1)) + 1000
      const minutes = 3 + Math.floor(this.rand() * 28)
      const end = start + minutes * MINUTE + 1000 * Math.floor(this.rand() * 60)
      v.riding = { start, end, from: { lat: v.lat, lon: v.lon }, tripNo: ++this.tripSeq }
      v.station = -1
      if (end <= to) this.endTrip(v, open)
    }
  }

  private endTrip(v: Vehicle, openStations: number): void {
    const trip = v.riding!
    const durationS = Math.round((trip.end - trip.start) / 1000)
    // 2.5 to 4 m/s on the road; the straight line is shorter than the ride.
    const rideM = Math.round(durationS * (2.5 + this.rand() * 1.5))
    const bearing = this.rand() * 2 * Math.PI
    const reach = rideM * 0.6
    const lat = clamp(trip.from.lat + (reach * Math.cos(bearing)) / 111_320, CENTER.lat - 0.03, CENTER.lat + 0.03)
    const lon = clamp(trip.from.lon + (reach * Math.sin(bearing)) / (111_320 * Math.cos((CENTER.lat * Math.PI) / 180)), CENTER.lon - 0.035, CENTER.lon + 0.035)
    // Half the trips end at the nearest station, the others wherever the rider leaves the bike.
    if (this.rand() < 0.5) {
      let best = 0
      for (let i = 1; i < openStations; i++) {
        if (haversineM({ lat, lon }, this.stations[i]!) < haversineM({ lat, lon }, this.stations[best]!)) best = i
      }
      v.station = best
      v.lat = this.stations[best]!.lat
      v.lon = this.stations[best]!.lon
    } else {
      v.station = -1
      v.lat = round6(lat)
      v.lon = round6(lon)
    }
    v.riding = null
    v.reportedAt = trip.end
    // GBFS privacy rule: a new public id after every trip.
    v.gbfsId = this.newGbfsId()

    const to = { lat: v.lat, lon: v.lon }
    const late = this.rand() < this.quirks.lateTripRate
    const defectRoll = this.rand()
    const defect: TripDefect | null =
      defectRoll < this.quirks.badTripRate ? TRIP_DEFECTS[Math.floor((defectRoll / this.quirks.badTripRate) * TRIP_DEFECTS.length)]! : null
    // Only good trips are repeated: a repeated defect would be the same rejection twice.
    const repeated = this.rand() < this.quirks.duplicateTripRate && defect === null
    const t: TruthTrip = {
      orderNo: `OD${formatLocal(trip.start, this.timezone).replace(/\D/g, '')}${String(trip.tripNo).padStart(6, '0')}`,
      bikeNo: v.bikeNo,
      startedAt: trip.start,
      endedAt: trip.end,
      start: wgs84ToGcj02(trip.from.lat, trip.from.lon),
      end: wgs84ToGcj02(to.lat, to.lon),
      durationS,
      distanceM: Math.max(rideM, Math.round(haversineM(trip.from, to))),
      // 1.50 yuan per started 15 minutes.
      feeCents: 150 * Math.ceil(durationS / 900),
      isReupload: late,
      // A late trip reaches the platform 10 to 40 minutes after it ended.
      uploadAt: late ? trip.end + (10 + Math.floor(this.rand() * 30)) * MINUTE : trip.end,
      defect,
      repeated,
    }
    this.trips.push(t)
    this.pendingUploads.push({ tripIndex: this.trips.length - 1, at: t.uploadAt })
    if (repeated) this.pendingUploads.push({ tripIndex: this.trips.length - 1, at: t.uploadAt + 2 * MINUTE })
  }

  /** Orders received by the platform up to `at` join the API's list, in the order received. */
  private uploadTrips(at: number): void {
    const due = this.pendingUploads.filter((u) => u.at <= at).sort((a, b) => a.at - b.at || a.tripIndex - b.tripIndex)
    for (const u of due) this.orders.push(u.tripIndex)
    const rest = this.pendingUploads.filter((u) => u.at > at)
    this.pendingUploads.length = 0
    this.pendingUploads.push(...rest)
  }

  // --- rendering ------------------------------------------------------------

  private time(layout: SimLayout, ms: number, msEpoch: boolean, micro = false): number | string {
    if (layout === '3.0') return rfc3339(ms, micro)
    return msEpoch ? ms : Math.floor(ms / 1000)
  }

  private envelope(layout: SimLayout, lastUpdated: number | string, ttl: number, data: unknown): object {
    return { last_updated: lastUpdated, ttl, version: layout, data }
  }

  private feedList(layout: SimLayout, lang: string | null): { name: string; url: string }[] {
    const vehicleFile = layout === '2.3' ? 'free_bike_status' : 'vehicle_status'
    const names = ['system_information', 'vehicle_types', 'station_information', 'station_status', vehicleFile, 'system_pricing_plans']
    const dir = lang === null ? `${this.url}/gbfs/${layout}` : `${this.url}/gbfs/${layout}/${lang}`
    return names.map((name) => ({ name, url: `${dir}/${name}.json` }))
  }

  /** A file's body, or null when this layout has no such file. */
  private render(layout: SimLayout, feed: string, lang: string | null, k: number): object | null {
    const at = this.origin + k * this.periodMs
    const name = (zh: string, en: string): unknown =>
      layout === '3.0'
        ? [
            { language: 'zh', text: zh },
            { language: 'en', text: en },
          ]
        : lang === 'en'
          ? en
          : zh
    switch (feed) {
      case 'gbfs':
        if (layout === '3.0') return this.envelope(layout, rfc3339(at), 300, { feeds: this.feedList(layout, null) })
        return this.envelope(layout, Math.floor(at / 1000), 300, { zh: { feeds: this.feedList(layout, 'zh') }, en: { feeds: this.feedList(layout, 'en') } })
      case 'system_information':
        return this.envelope(layout, this.time(layout, this.origin, false), 3600, {
          system_id: this.systemId,
          language: layout === '2.3' ? lang : undefined,
          languages: layout === '3.0' ? ['zh', 'en'] : undefined,
          name: name('南山共享单车', 'Nanshan Bike Share'),
          operator: layout === '3.0' ? name('城市单车运营有限公司', 'City Bike Operations Ltd.') : '城市单车运营有限公司',
          timezone: 'Asia/Shanghai',
          opening_hours: '24/7',
          feed_contact_email: 'gbfs@citysim.example',
        })
      case 'vehicle_types':
        return this.envelope(layout, this.time(layout, this.origin, false), 3600, {
          vehicle_types: [
            { vehicle_type_id: 'bike', form_factor: 'bicycle', propulsion_type: 'human', name: name('单车', 'Bike') },
            { vehicle_type_id: 'ebike', form_factor: 'bicycle', propulsion_type: 'electric_assist', max_range_meters: 40000, name: name('助力车', 'E-bike') },
          ],
        })
      case 'station_information':
        // last_updated moves with every publication even when nothing changed, as many producers do.
        return this.envelope(layout, this.time(layout, at, false), 300, {
          stations: this.stations.slice(0, this.stationCount(k)).map((s) => ({
            station_id: s.id,
            name: name(s.nameZh, s.nameEn),
            lat: s.lat,
            lon: s.lon,
            capacity: s.capacity,
            ...(layout === '3.0' ? { is_virtual_station: true } : {}),
          })),
        })
      case 'station_status':
        return this.renderStationStatus(layout, this.contents[this.published[k]!]!)
      case 'free_bike_status':
      case 'vehicle_status':
        if ((feed === 'free_bike_status') !== (layout === '2.3')) return null
        return this.renderVehicles(layout, this.contents[this.published[k]!]!)
      case 'system_pricing_plans':
        return this.envelope(layout, this.time(layout, this.origin, false), 3600, {
          plans: [{ plan_id: 'std', name: name('标准计费', 'Standard'), currency: 'CNY', price: 1.5, is_taxable: false, description: name('每15分钟1.5元', '1.50 per 15 minutes') }],
        })
      default:
        return null
    }
  }

  private renderStationStatus(layout: SimLayout, c: SnapshotContent): object {
    const v3 = layout === '3.0'
    const items: Record<string, unknown>[] = c.stations.map((s) => ({
      station_id: s.id,
      [v3 ? 'num_vehicles_available' : 'num_bikes_available']: s.id === c.unknownStation ? 'unknown' : s.available,
      [v3 ? 'num_vehicles_disabled' : 'num_bikes_disabled']: s.disabled,
      num_docks_available: s.docks,
      is_installed: s.installed,
      is_renting: s.renting,
      is_returning: s.returning,
      last_reported: this.time(layout, s.reportedAt, c.msEpoch),
    }))
    const dup = items.find((s) => s.station_id === c.duplicateStation)
    if (dup !== undefined) items.push({ ...dup })
    return this.envelope(layout, this.time(layout, c.at, c.msEpoch), this.periodMs / 1000, { stations: items })
  }

  private renderVehicles(layout: SimLayout, c: SnapshotContent): object {
    const v3 = layout === '3.0'
    const items: Record<string, unknown>[] = []
    for (const v of c.vehicles) {
      if (!v3 && v.stationId !== null) continue
      items.push({
        [v3 ? 'vehicle_id' : 'bike_id']: v.id,
        ...(v.lat === null ? {} : { lat: v.id === c.unknownVehicle ? 'unknown' : v.lat, lon: v.lon }),
        ...(v.stationId === null ? {} : { station_id: v.stationId }),
        vehicle_type_id: v.typeId,
        is_reserved: v.reserved,
        is_disabled: v.disabled,
        last_reported: this.time(layout, v.reportedAt, c.msEpoch, true),
      })
    }
    const idField = v3 ? 'vehicle_id' : 'bike_id'
    const dup = items.find((v) => v[idField] === c.duplicateVehicle)
    if (dup !== undefined) items.push({ ...dup })
    const conflict = items.find((v) => v[idField] === c.conflictVehicle)
    if (conflict !== undefined) items.push({ ...conflict, lat: round6((conflict.lat as number) + 0.0005) })
    return this.envelope(layout, this.time(layout, c.at, c.msEpoch), this.periodMs / 1000, { [v3 ? 'vehicles' : 'bikes']: items })
  }

  private renderTrip(t: TruthTrip): Record<string, unknown> {
    const item: Record<string, unknown> = {
      orderNo: t.orderNo,
      bikeNo: t.bikeNo,
      startTime: formatLocal(t.startedAt, this.timezone),
      endTime: formatLocal(t.endedAt, this.timezone),
      startLng: t.start.lon,
      startLat: t.start.lat,
      endLng: t.end.lon,
      endLat: t.end.lat,
      rideSeconds: t.durationS,
      distance: t.distanceM,
      fee: (t.feeCents / 100).toFixed(2),
      isReupload: t.isReupload ? 1 : 0,
    }
    switch (t.defect) {
      case 'missing_order_no':
        delete item.orderNo
        break
      case 'unknown_fee':
        item.fee = 'unknown'
        break
      case 'unknown_distance':
        item.distance = 'unknown'
        break
      case 'end_before_start':
        item.endTime = formatLocal(t.startedAt - 5 * MINUTE, this.timezone)
        break
      case null:
        break
    }
    return item
  }

  // --- HTTP -----------------------------------------------------------------

  private inOutage(feed: string): boolean {
    return this.outageFeeds === 'all' || (this.outageFeeds !== null && this.outageFeeds.has(feed))
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://simulator')
    this.requestCounts.set(url.pathname, (this.requestCounts.get(url.pathname) ?? 0) + 1)
    if (url.pathname === '/_sim/outage' && req.method === 'POST') {
      const on = url.searchParams.get('on') === '1' || url.searchParams.get('on') === 'true'
      const feeds = (url.searchParams.get('feeds') ?? '').split(',').filter((f) => f !== '')
      this.setOutage(on, feeds, url.searchParams.get('mode') === 'reset' ? 'reset' : '503')
      return send(res, 200, { outage: on, feeds: feeds.length === 0 ? 'all' : feeds })
    }
    if (req.method !== 'GET') return send(res, 405, { code: 405, msg: 'method not allowed', data: null })
    this.advance()

    if (url.pathname === '/openapi/v1/bike/orders') {
      if (this.inOutage('trips')) return this.outage(res)
      if (this.appKey !== undefined && req.headers['x-app-key'] !== this.appKey) return send(res, 200, { code: 401, msg: 'invalid app key', data: null })
      return this.sendOrders(res, url)
    }
    const m = /^\/gbfs\/(2\.3|3\.0)\/(?:(zh|en)\/)?([a-z_]+)\.json$/.exec(url.pathname)
    if (m === null) return send(res, 404, { error: 'not found' })
    const layout = m[1] as SimLayout
    const lang = m[2] ?? null
    const feed = m[3]!
    if ((layout === '2.3') !== (lang !== null) && feed !== 'gbfs') return send(res, 404, { error: 'not found' })
    if (feed === 'gbfs' && lang !== null) return send(res, 404, { error: 'not found' })
    if (this.inOutage(feed === 'gbfs' ? 'gbfs' : feed)) return this.outage(res)
    const k = this.currentIndex()
    const body = this.render(layout, feed, lang, k)
    if (body === null) return send(res, 404, { error: 'not found' })
    if ((SIM_FEEDS as readonly string[]).includes(feed)) {
      const key = `${layout}/${feed}`
      let set = this.served.get(key)
      if (set === undefined) this.served.set(key, (set = new Set()))
      set.add(feed === 'station_information' ? this.stationVersionStart(k) : this.contents[this.published[k]!]!.index)
    }
    send(res, 200, body)
  }

  /** The snapshot from which the station_information served at k has been unchanged. */
  private stationVersionStart(k: number): number {
    let from = 0
    for (const v of this.stationVersions) if (v.from <= k) from = v.from
    return from
  }

  private outage(res: ServerResponse): void {
    if (this.outageMode === 'reset') {
      res.socket?.destroy()
      return
    }
    send(res, 503, { error: 'service unavailable' })
  }

  private sendOrders(res: ServerResponse, url: URL): void {
    const cursorText = url.searchParams.get('cursor')
    const limitText = url.searchParams.get('limit') ?? '100'
    if (!/^\d{1,4}$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 1000) {
      return send(res, 200, { code: 400, msg: 'limit must be 1..1000', data: null })
    }
    let after = 0
    if (cursorText !== null) {
      const m = /^o([0-9a-z]+)$/.exec(cursorText)
      if (m === null) return send(res, 200, { code: 400, msg: 'bad cursor', data: null })
      after = parseInt(m[1]!, 36)
    }
    const limit = Number(limitText)
    const slice = this.orders.slice(after, after + limit)
    const next = after + slice.length
    send(res, 200, {
      code: 0,
      msg: 'success',
      data: { list: slice.map((i) => this.renderTrip(this.trips[i]!)), nextCursor: `o${next.toString(36)}`, hasMore: next < this.orders.length },
    })
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}
