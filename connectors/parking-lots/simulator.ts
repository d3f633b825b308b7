// A vendor car-park platform ("停车场管理平台 open API") over real HTTP, for
// demos, tests and benchmarks. Deterministic from a seed.
//
// Wire contract (all JSON, envelope { code, msg, data }; code 0 = success):
//   GET /openapi/v1/parks                                  data: Park[]
//   GET /openapi/v1/records?type=in|out&afterSeq=N&limit=M data: { list: Entry[] | Exit[], hasMore }
//   GET /openapi/v1/space?afterSeq=N&limit=M               data: { list: SpaceReport[], hasMore }
// `seq` is dense per stream (1, 2, 3, ...) and items come in ascending seq; limit is 1..1000.
// Times are naive local `YYYY-MM-DD HH:mm:ss` in the simulator's zone. With an
// app key configured, a missing or wrong X-App-Key answers code 401.
//
// Generation is a discrete-event simulation (arrivals, exits, periodic space
// reports) advanced lazily to clock.now() on each request, so the same seed and
// clock readings always give the same records, however requests are spread.
// Records are stored column-wise (typed arrays) and rendered to JSON per page.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Clock, systemClock } from '../../lib/clock.ts'
import { formatLocal, zoneOffset } from '../../lib/local-time.ts'
import {
  ARRIVAL_PROFILE,
  ARRIVAL_PROFILE_MAX,
  PLATE_COLORS,
  type PlateColor,
  type SimLot,
  buildLots,
  createRng,
  feeCents,
  hash32,
  randomPlate,
  randomStay,
} from './simulator-data.ts'

const MINUTE = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000
export const MAX_PAGE_LIMIT = 1000

export const SIM_STREAMS = ['in', 'out', 'space'] as const
export type SimStream = (typeof SIM_STREAMS)[number]

/**
 * Defect kinds, by numeric code stored per item (0 = none). `backfill` is not
 * a defect: a backfilled (补传) record is valid data that arrives late.
 */
export const DEFECTS = [
  'none',
  'missing_field',
  'wrong_type',
  'unknown_value',
  'unknown_lot',
  'future_timestamp',
  'duplicate_conflict',
  'exact_duplicate',
  'free_above_capacity',
  'malformed_json',
] as const
export type Defect = Exclude<(typeof DEFECTS)[number], 'none'>

const D_MISSING = 1
const D_WRONG_TYPE = 2
const D_UNKNOWN_VALUE = 3
const D_UNKNOWN_LOT = 4
const D_FUTURE = 5
const D_CONFLICT = 6
const D_EXACT_DUP = 7
const D_FREE_ABOVE = 8
const BACKFILL = -1

const ENTRY_DEFECTS = [D_MISSING, D_WRONG_TYPE, D_UNKNOWN_LOT, D_FUTURE, D_CONFLICT, D_EXACT_DUP, BACKFILL] as const
const EXIT_DEFECTS = [D_MISSING, D_WRONG_TYPE, D_UNKNOWN_VALUE, D_UNKNOWN_LOT, D_FUTURE, D_CONFLICT, D_EXACT_DUP, BACKFILL] as const
const SPACE_DEFECTS = [D_MISSING, D_WRONG_TYPE, D_UNKNOWN_VALUE, D_UNKNOWN_LOT, D_FUTURE, D_FREE_ABOVE] as const

/**
 * The per-item error code a consumer should raise for each defect, and where:
 * the connector rejects items; duplicates are the pipeline's to detect (it
 * dedupes by event id and compares content; an exact repeat is dropped silently).
 */
export const DEFECT_EXPECTATIONS: Record<Defect, { code: string | null; stage: 'connector' | 'pipeline' }> = {
  missing_field: { code: 'missing_field', stage: 'connector' },
  wrong_type: { code: 'wrong_type', stage: 'connector' },
  unknown_value: { code: 'invalid_value', stage: 'connector' },
  unknown_lot: { code: 'unknown_lot', stage: 'connector' },
  future_timestamp: { code: 'future_timestamp', stage: 'connector' },
  free_above_capacity: { code: 'invalid_value', stage: 'connector' },
  malformed_json: { code: 'malformed_json', stage: 'connector' },
  duplicate_conflict: { code: 'duplicate_record', stage: 'pipeline' },
  exact_duplicate: { code: null, stage: 'pipeline' },
}

export interface SimulatorFaults {
  /** Fraction of items (0..1) emitted with a defect or as an extra duplicate or backfill. */
  badRate?: number
  /** Pages that contain any of these seqs are served as truncated JSON, every time. */
  malformedSeqs?: Partial<Record<SimStream, readonly number[]>>
  /** Answer HTTP 503 to every call. */
  outage?: boolean
  /** Delay every response by this much. */
  slowMs?: number
}

export interface ParkingSimulatorOptions {
  seed?: number
  /** Number of car parks (default 5). */
  lots?: number
  /** Zone of the naive local times the platform writes (default Asia/Shanghai). */
  timezone?: string
  clock?: Clock
  /** Target passage records (entries + exits) per simulated minute, across all lots (default 20). */
  eventsPerMinute?: number
  /** Stop all generation once this many passage records exist. */
  maxEvents?: number
  appKey?: string
  faults?: SimulatorFaults
  /** City centre the lots are placed around (default Hengqin, GCJ-02). */
  center?: { lng: number; lat: number }
  /** Interval of free-space reports per lot (default 5 min). */
  spaceIntervalMs?: number
  /** Start of simulated history (default: clock.now() at construction). */
  startAt?: number
}

/** A valid passage record the simulator served or will serve. */
export interface TruthPassage {
  type: 'in' | 'out'
  seq: number
  recordNo: string
  parkCode: string
  /** inTime for entries, outTime for exits, epoch ms. */
  occurredAt: number
  isReupload: boolean
  feeCents: number | null
}

export interface TruthSpace {
  seq: number
  parkCode: string
  freeSpace: number
  totalSpace: number
  reportTime: number
}

export interface BadRecord {
  type: SimStream
  seq: number
  /** The recordNo the item carries (or would carry); null for space reports. */
  recordNo: string | null
  /** The lot the item really belongs to. */
  parkCode: string
  defect: Defect
  /** Error code a consumer should raise, null when none (an exact repeat). */
  code: string | null
  stage: 'connector' | 'pipeline'
}

export interface ParkApiItem {
  parkCode: string
  parkName: string
  totalSpace: number
  lng: number
  lat: number
  coordType: 'GCJ02'
  address: string
  openTime: string
}

// Column store of passage items; `seq` is index + 1.
class PassageStore {
  length = 0
  lot = new Uint16Array(1024)
  gate = new Uint8Array(1024)
  color = new Uint8Array(1024)
  reupload = new Uint8Array(1024)
  defect = new Uint8Array(1024)
  inTime = new Float64Array(1024)
  outTime = new Float64Array(1024)
  fee = new Int32Array(1024)
  serial = new Uint32Array(1024)
  /** Exits: index of the entry of the same vehicle. */
  entry = new Int32Array(1024)
  /** Duplicates: index of the item they repeat; -1 otherwise. */
  orig = new Int32Array(1024)
  /** Entries only; exits read their entry's plate. */
  plate: string[] = []
  /** Items with a future-timestamp defect: the future time they carry. */
  future = new Map<number, number>()

  push(): number {
    if (this.length === this.lot.length) this.grow()
    return this.length++
  }

  private grow(): void {
    const n = this.lot.length * 2
    this.lot = copy(new Uint16Array(n), this.lot)
    this.gate = copy(new Uint8Array(n), this.gate)
    this.color = copy(new Uint8Array(n), this.color)
    this.reupload = copy(new Uint8Array(n), this.reupload)
    this.defect = copy(new Uint8Array(n), this.defect)
    this.inTime = copy(new Float64Array(n), this.inTime)
    this.outTime = copy(new Float64Array(n), this.outTime)
    this.fee = copy(new Int32Array(n), this.fee)
    this.serial = copy(new Uint32Array(n), this.serial)
    this.entry = copy(new Int32Array(n), this.entry)
    this.orig = copy(new Int32Array(n), this.orig)
  }
}

class SpaceStore {
  length = 0
  lot = new Uint16Array(1024)
  time = new Float64Array(1024)
  free = new Int32Array(1024)
  defect = new Uint8Array(1024)
  future = new Map<number, number>()

  push(): number {
    if (this.length === this.lot.length) {
      const n = this.lot.length * 2
      this.lot = copy(new Uint16Array(n), this.lot)
      this.time = copy(new Float64Array(n), this.time)
      this.free = copy(new Int32Array(n), this.free)
      this.defect = copy(new Uint8Array(n), this.defect)
    }
    return this.length++
  }
}

function copy<T extends { set(src: ArrayLike<number>): void }>(dst: T, src: ArrayLike<number>): T {
  dst.set(src)
  return dst
}

// Min-heap of pending exits ordered by (time, insertion order).
class ExitHeap {
  private time: number[] = []
  private order: number[] = []
  private entry: number[] = []
  private counter = 0

  get size(): number {
    return this.time.length
  }

  peekTime(): number {
    return this.time.length === 0 ? Infinity : this.time[0]!
  }

  push(t: number, entry: number): void {
    this.time.push(t)
    this.order.push(this.counter++)
    this.entry.push(entry)
    let i = this.time.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(i, p)) break
      this.swap(i, p)
      i = p
    }
  }

  pop(): { time: number; entry: number } {
    const top = { time: this.time[0]!, entry: this.entry[0]! }
    const last = this.time.length - 1
    this.swap(0, last)
    this.time.pop()
    this.order.pop()
    this.entry.pop()
    let i = 0
    const n = this.time.length
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < n && this.less(l, m)) m = l
      if (r < n && this.less(r, m)) m = r
      if (m === i) break
      this.swap(i, m)
      i = m
    }
    return top
  }

  private less(a: number, b: number): boolean {
    const ta = this.time[a]!
    const tb = this.time[b]!
    return ta < tb || (ta === tb && this.order[a]! < this.order[b]!)
  }

  private swap(a: number, b: number): void {
    const t = this.time[a]!
    this.time[a] = this.time[b]!
    this.time[b] = t
    const o = this.order[a]!
    this.order[a] = this.order[b]!
    this.order[b] = o
    const e = this.entry[a]!
    this.entry[a] = this.entry[b]!
    this.entry[b] = e
  }
}

interface PendingDuplicate {
  due: number
  orig: number
  defect: number
}

const STREAM_SALT: Record<SimStream, number> = { in: 1, out: 2, space: 3 }

export class ParkingSimulator {
  readonly timezone: string
  readonly lots: readonly SimLot[]
  readonly seed: number
  private readonly clock: Clock
  private readonly appKey: string | undefined
  private readonly eventsPerMinute: number
  private readonly spaceIntervalMs: number
  private maxEvents: number
  private badRate: number
  private malformed: Record<SimStream, Set<number>>
  private outageOn: boolean
  private slowMs: number

  private readonly rand: () => number
  private readonly entries = new PassageStore()
  private readonly exits = new PassageStore()
  private readonly spaces = new SpaceStore()
  private readonly heap = new ExitHeap()
  private readonly occupancy: Int32Array
  private readonly inSerial: Uint32Array
  private readonly outSerial: Uint32Array
  private readonly lotWeights: Float64Array
  private readonly stayScale: number
  private readonly arrivalRatePerMs: number
  private pendingIn: PendingDuplicate[] = []
  private pendingOut: PendingDuplicate[] = []
  private nextArrival = 0
  private nextTick = 0
  private simTime = 0
  private passages = 0
  private finished = false
  private target = 0
  /** Every item's JSON as UTF-8, joined by commas, once generation has finished and prerender() ran. */
  private rendered: Record<SimStream, RenderedStream> | null = null

  private server: Server | null = null
  private baseUrl: string | null = null
  private readonly requestCounts = new Map<string, number>()

  constructor(options: ParkingSimulatorOptions = {}) {
    this.seed = options.seed ?? 1
    this.timezone = options.timezone ?? 'Asia/Shanghai'
    this.clock = options.clock ?? systemClock
    this.appKey = options.appKey
    this.eventsPerMinute = options.eventsPerMinute ?? 20
    this.spaceIntervalMs = options.spaceIntervalMs ?? 5 * MINUTE
    this.maxEvents = options.maxEvents ?? Infinity
    if (!(this.eventsPerMinute > 0)) throw new RangeError('eventsPerMinute must be > 0')
    if (!(this.spaceIntervalMs >= 1000)) throw new RangeError('spaceIntervalMs must be >= 1000')
    const faults = options.faults ?? {}
    this.badRate = faults.badRate ?? 0
    this.malformed = toMalformed(faults.malformedSeqs)
    this.outageOn = faults.outage ?? false
    this.slowMs = faults.slowMs ?? 0
    this.rand = createRng(this.seed)
    // Validates the zone early, before the first request.
    zoneOffset(0, this.timezone)

    const lotCount = options.lots ?? 5
    if (!Number.isInteger(lotCount) || lotCount < 1 || lotCount > 9999) throw new RangeError('lots must be 1..9999')
    this.lots = buildLots(lotCount, options.center ?? { lng: 113.54, lat: 22.13 }, this.rand)
    this.occupancy = new Int32Array(lotCount)
    this.inSerial = new Uint32Array(lotCount)
    this.outSerial = new Uint32Array(lotCount)
    this.lotWeights = new Float64Array(lotCount)
    let total = 0
    for (let i = 0; i < lotCount; i++) {
      total += this.lots[i]!.totalSpace
      this.lotWeights[i] = total
    }
    for (let i = 0; i < lotCount; i++) this.lotWeights[i]! /= total

    // Each arrival makes an entry and, later, an exit.
    const arrivalsPerMinute = this.eventsPerMinute / 2
    this.arrivalRatePerMs = (arrivalsPerMinute / MINUTE) * ARRIVAL_PROFILE_MAX
    // Mean stay from randomStay is about 3 h; shorten stays when the arrival
    // rate would otherwise keep every lot full, so the target rate is reached.
    const meanStayMin = 182
    this.stayScale = Math.min(1, (0.6 * total) / (arrivalsPerMinute * meanStayMin))
    this.reset(options.startAt ?? this.clock.now())
  }

  private reset(start: number): void {
    this.simTime = start
    this.target = start
    this.nextTick = start
    this.nextArrival = start + this.expDraw()
  }


  outage(on: boolean): void {
    this.outageOn = on
  }

  setSlowMs(ms: number): void {
    this.slowMs = ms
  }

  setBadRate(rate: number): void {
    this.badRate = rate
  }

  setMalformedSeqs(seqs: Partial<Record<SimStream, readonly number[]>>): void {
    this.malformed = toMalformed(seqs)
  }


  /** Generates everything up to clock.now(). Called on every request. */
  advance(): void {
    this.advanceTo(this.clock.now())
  }

  private advanceTo(target: number): void {
    if (target <= this.simTime) return
    this.target = target
    while (!this.finished) {
      const tExit = this.heap.peekTime()
      const t = Math.min(tExit, this.nextArrival, this.nextTick)
      if (t > target) break
      if (tExit === t) {
        const { time, entry } = this.heap.pop()
        this.exitVehicle(time, entry)
      } else if (this.nextArrival === t) {
        this.arrival(t)
      } else {
        this.tick(t)
      }
    }
    this.simTime = target
  }

  /**
   * Generates `n` passage records at once for benchmarks, as history that ends
   * within the last day before clock.now(), and then stops generation (as if
   * maxEvents were n). Must be called before anything else is generated.
   */
  generateBulk(n: number): { passages: number; spaces: number; ms: number } {
    if (this.entries.length + this.exits.length + this.spaces.length > 0) {
      throw new Error('generateBulk must run before any record is generated')
    }
    const t0 = performance.now()
    const now = this.clock.now()
    this.maxEvents = n
    this.reset(now)
    this.target = now
    this.advanceTo(Infinity)
    // Move the history back by whole days so times of day (and opening hours) hold.
    let last = now
    for (let i = 0; i < this.entries.length; i++) last = Math.max(last, this.entries.inTime[i]!)
    for (let i = 0; i < this.exits.length; i++) last = Math.max(last, this.exits.outTime[i]!)
    const shift = Math.ceil((last - now) / DAY) * DAY
    if (shift > 0) {
      for (const store of [this.entries, this.exits]) {
        for (let i = 0; i < store.length; i++) {
          store.inTime[i]! -= shift
          store.outTime[i]! -= shift
        }
      }
      for (let i = 0; i < this.spaces.length; i++) this.spaces.time[i]! -= shift
    }
    for (const [stream, store] of [
      ['in', this.entries],
      ['out', this.exits],
      ['space', this.spaces],
    ] as const) {
      for (const i of store.future.keys()) store.future.set(i, this.futureTime(now, stream, i))
    }
    this.simTime = now
    this.finished = true
    return { passages: this.passages, spaces: this.spaces.length, ms: performance.now() - t0 }
  }

  private expDraw(): number {
    return -Math.log(1 - this.rand()) / this.arrivalRatePerMs
  }

  private localHour(t: number): number {
    const local = t + zoneOffset(t, this.timezone)
    return Math.floor(local / HOUR) - Math.floor(local / DAY) * 24
  }

  private pickLot(): number {
    const r = this.rand()
    const w = this.lotWeights
    let lo = 0
    let hi = w.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (r < w[mid]!) hi = mid
      else lo = mid + 1
    }
    return lo
  }

  private arrival(t: number): void {
    this.nextArrival = t + this.expDraw()
    const hour = this.localHour(t)
    // Thinning: a constant-rate Poisson process accepted with the hour's intensity.
    if (this.rand() * ARRIVAL_PROFILE_MAX >= ARRIVAL_PROFILE[hour]!) return
    const lot = this.pickLot()
    const info = this.lots[lot]!
    const limited = info.openTime !== '00:00-24:00'
    if (limited && (hour < 7 || hour >= 22)) return
    if (this.occupancy[lot]! >= info.totalSpace) return // full: the car is turned away
    const { plate, color } = randomPlate(this.rand)
    let out = t + Math.max(10 * MINUTE, Math.round(randomStay(this.rand) * this.stayScale))
    if (limited) {
      const local = t + zoneOffset(t, this.timezone)
      const closing = Math.floor(local / DAY) * DAY + 22 * HOUR - zoneOffset(t, this.timezone)
      out = Math.min(out, Math.max(closing, t + 10 * MINUTE))
    }
    this.occupancy[lot]!++
    const e = this.emitEntry(t, lot, plate, color, false)
    this.heap.push(out, e)
  }

  private exitVehicle(t: number, entry: number): void {
    const lot = this.entries.lot[entry]!
    this.occupancy[lot]!--
    this.emitExit(t, entry, false)
  }

  private tick(t: number): void {
    this.nextTick = t + this.spaceIntervalMs
    for (let lot = 0; lot < this.lots.length; lot++) {
      const s = this.spaces
      const i = s.push()
      s.lot[i] = lot
      s.time[i] = wholeSecond(t)
      s.free[i] = this.lots[lot]!.totalSpace - this.occupancy[lot]!
      s.defect[i] = 0
      if (this.badRate > 0 && this.rand() < this.badRate) {
        const d = SPACE_DEFECTS[Math.floor(this.rand() * SPACE_DEFECTS.length)]!
        s.defect[i] = d
        if (d === D_FUTURE) s.future.set(i, this.futureTime(this.target, 'space', i))
      }
    }
  }

  private futureTime(base: number, stream: SimStream, i: number): number {
    const h = hash32(this.seed, STREAM_SALT[stream], i, 5)
    return wholeSecond(base + DAY * (1 + (h % 5)) + (h % HOUR))
  }

  private countPassage(): void {
    this.passages++
    if (this.passages >= this.maxEvents) this.finished = true
  }

  private emitEntry(t: number, lot: number, plate: string, color: PlateColor, backfill: boolean): number {
    const s = this.entries
    const i = s.push()
    s.lot[i] = lot
    const gates = this.lots[lot]!.entryGates
    s.gate[i] = Math.floor(this.rand() * gates.length)
    s.color[i] = PLATE_COLORS.indexOf(color)
    s.plate[i] = plate
    s.reupload[i] = backfill ? 1 : 0
    s.inTime[i] = wholeSecond(t)
    s.outTime[i] = 0
    s.fee[i] = 0
    s.serial[i] = ++this.inSerial[lot]!
    s.entry[i] = -1
    s.orig[i] = -1
    s.defect[i] = 0
    this.countPassage()
    if (!backfill) this.drawDefect('in', i, t, lot)
    this.flushDuplicates('in')
    return i
  }

  private emitExit(t: number, entry: number, backfill: boolean): number {
    if (this.finished) return -1
    const s = this.exits
    const i = s.push()
    const lot = this.entries.lot[entry]!
    const info = this.lots[lot]!
    s.lot[i] = lot
    s.gate[i] = Math.floor(this.rand() * info.exitGates.length)
    s.color[i] = this.entries.color[entry]!
    s.reupload[i] = backfill ? 1 : 0
    const inTime = this.entries.inTime[entry]!
    const outTime = Math.max(inTime, wholeSecond(t))
    s.inTime[i] = inTime
    s.outTime[i] = outTime
    s.fee[i] = feeCents(info, outTime - inTime, PLATE_COLORS[this.entries.color[entry]!]!)
    s.serial[i] = ++this.outSerial[lot]!
    s.entry[i] = entry
    s.orig[i] = -1
    s.defect[i] = 0
    this.countPassage()
    if (!backfill) this.drawDefect('out', i, t, lot)
    this.flushDuplicates('out')
    return i
  }

  private drawDefect(stream: 'in' | 'out', i: number, t: number, lot: number): void {
    if (this.badRate <= 0 || this.rand() >= this.badRate) return
    const kinds = stream === 'in' ? ENTRY_DEFECTS : EXIT_DEFECTS
    const d = kinds[Math.floor(this.rand() * kinds.length)]!
    const store = stream === 'in' ? this.entries : this.exits
    if (d === BACKFILL) {
      this.backfill(t, lot)
    } else if (d === D_CONFLICT || d === D_EXACT_DUP) {
      // Repeated at least MAX_PAGE_LIMIT items later, so always in a later page.
      const pending = stream === 'in' ? this.pendingIn : this.pendingOut
      pending.push({ due: store.length + MAX_PAGE_LIMIT + Math.floor(this.rand() * 400), orig: i, defect: d })
    } else {
      store.defect[i] = d
      if (d === D_FUTURE) store.future.set(i, this.futureTime(this.target, stream, i))
    }
  }

  /** A stay that happened 1..48 h ago, uploaded now (补传): entry and exit both marked isReupload. */
  private backfill(t: number, lot: number): void {
    if (this.finished) return
    const age = HOUR + Math.floor(this.rand() * 47 * HOUR)
    const inT = t - age
    const stay = Math.min(age - MINUTE, Math.max(10 * MINUTE, randomStay(this.rand)))
    const { plate, color } = randomPlate(this.rand)
    const e = this.emitEntry(inT, lot, plate, color, true)
    this.emitExit(inT + stay, e, true)
  }

  private flushDuplicates(stream: 'in' | 'out'): void {
    const pending = stream === 'in' ? this.pendingIn : this.pendingOut
    if (pending.length === 0) return
    const store = stream === 'in' ? this.entries : this.exits
    for (let k = 0; k < pending.length && !this.finished; ) {
      const p = pending[k]!
      if (p.due > store.length) {
        k++
        continue
      }
      pending.splice(k, 1)
      const o = p.orig
      const i = store.push()
      store.lot[i] = store.lot[o]!
      store.gate[i] = store.gate[o]!
      store.color[i] = store.color[o]!
      store.reupload[i] = store.reupload[o]!
      store.inTime[i] = store.inTime[o]!
      store.outTime[i] = store.outTime[o]!
      store.fee[i] = store.fee[o]!
      store.serial[i] = store.serial[o]!
      store.entry[i] = store.entry[o]!
      store.orig[i] = o
      store.defect[i] = p.defect
      if (stream === 'in') store.plate[i] = store.plate[o]!
      this.countPassage()
    }
  }


  private recordNo(stream: 'in' | 'out', i: number): string {
    const s = stream === 'in' ? this.entries : this.exits
    const lot = this.lots[s.lot[i]!]!
    const t = stream === 'in' ? s.inTime[i]! : s.outTime[i]!
    const day = formatLocal(t, this.timezone)
    const date = day.slice(0, 4) + day.slice(5, 7) + day.slice(8, 10)
    return `${lot.parkCode}-${stream === 'in' ? 'IN' : 'OUT'}-${date}-${String(s.serial[i]!).padStart(6, '0')}`
  }

  private plateOf(stream: 'in' | 'out', i: number): string {
    return stream === 'in' ? this.entries.plate[i]! : this.entries.plate[this.exits.entry[i]!]!
  }

  /** The item as the platform serves it, defects applied. */
  renderPassage(stream: 'in' | 'out', i: number): Record<string, unknown> {
    const s = stream === 'in' ? this.entries : this.exits
    const lot = this.lots[s.lot[i]!]!
    const item: Record<string, unknown> = {
      seq: i + 1,
      recordNo: this.recordNo(stream, i),
      parkCode: lot.parkCode,
      gateNo: stream === 'in' ? lot.entryGates[s.gate[i]!]! : lot.exitGates[s.gate[i]!]!,
      plateNo: this.plateOf(stream, i),
      plateColor: PLATE_COLORS[s.color[i]!]!,
      inTime: formatLocal(s.inTime[i]!, this.timezone),
    }
    if (stream === 'out') {
      item.outTime = formatLocal(s.outTime[i]!, this.timezone)
      item.fee = (s.fee[i]! / 100).toFixed(2)
    }
    item.isReupload = s.reupload[i]!
    const d = s.defect[i]!
    if (d === 0 || d === D_EXACT_DUP) return item
    const h = hash32(this.seed, STREAM_SALT[stream], i, d)
    const timeField = stream === 'in' ? 'inTime' : 'outTime'
    switch (d) {
      case D_MISSING: {
        const fields = ['recordNo', 'parkCode', timeField]
        delete item[fields[h % fields.length]!]
        break
      }
      case D_WRONG_TYPE:
        if (h % 2 === 0) item[timeField] = 12345
        else item.parkCode = null
        break
      case D_UNKNOWN_VALUE:
        item.fee = 'unknown'
        break
      case D_UNKNOWN_LOT:
        item.parkCode = `XX${String(1 + (h % 9)).padStart(2, '0')}`
        break
      case D_FUTURE:
        item[timeField] = formatLocal(s.future.get(i)!, this.timezone)
        break
      case D_CONFLICT: {
        const which = h % 3
        if (which === 0) item.plateNo = randomPlate(createRng(h)).plate
        else if (which === 1) item[timeField] = formatLocal((stream === 'in' ? s.inTime[i]! : s.outTime[i]!) - (1 + (h % 10)) * MINUTE, this.timezone)
        else if (stream === 'out') item.fee = ((s.fee[i]! + 100 * (1 + (h % 10))) / 100).toFixed(2)
        else item.gateNo = 'E9'
        // Make sure the repeat really differs from what was served first.
        if (which === 0 && item.plateNo === this.plateOf(stream, i)) item.plateNo = `${String(item.plateNo)}X`
        break
      }
    }
    return item
  }

  renderSpace(i: number): Record<string, unknown> {
    const s = this.spaces
    const lot = this.lots[s.lot[i]!]!
    const item: Record<string, unknown> = {
      seq: i + 1,
      parkCode: lot.parkCode,
      freeSpace: s.free[i]!,
      totalSpace: lot.totalSpace,
      reportTime: formatLocal(s.time[i]!, this.timezone),
    }
    const d = s.defect[i]!
    if (d === 0) return item
    const h = hash32(this.seed, STREAM_SALT.space, i, d)
    switch (d) {
      case D_MISSING: {
        const fields = ['parkCode', 'freeSpace', 'reportTime']
        delete item[fields[h % fields.length]!]
        break
      }
      case D_WRONG_TYPE:
        if (h % 2 === 0) item.reportTime = 12345
        else item.parkCode = null
        break
      case D_UNKNOWN_VALUE:
        item.freeSpace = 'unknown'
        break
      case D_UNKNOWN_LOT:
        item.parkCode = `XX${String(1 + (h % 9)).padStart(2, '0')}`
        break
      case D_FUTURE:
        item.reportTime = formatLocal(s.future.get(i)!, this.timezone)
        break
      case D_FREE_ABOVE:
        item.freeSpace = lot.totalSpace + 1 + (h % 50)
        break
    }
    return item
  }

  parks(): ParkApiItem[] {
    return this.lots.map((l) => ({
      parkCode: l.parkCode,
      parkName: l.parkName,
      totalSpace: l.totalSpace,
      lng: l.lng,
      lat: l.lat,
      coordType: 'GCJ02',
      address: l.address,
      openTime: l.openTime,
    }))
  }

  /**
   * One page of a stream as the HTTP body the platform sends, without the HTTP
   * round trip (benchmarks use it). Generates up to clock.now() first.
   */
  page(stream: SimStream, afterSeq: number, limit: number): string {
    const body = this.pageBody(stream, afterSeq, limit)
    return typeof body === 'string' ? body : body.toString('utf8')
  }

  /** The same page as UTF-8 bytes when the items are prerendered (no encoding per request), else as text. */
  private pageBody(stream: SimStream, afterSeq: number, limit: number): string | Buffer {
    this.advance()
    const length = this.streamLength(stream)
    const from = Math.min(afterSeq, length)
    const to = Math.min(afterSeq + limit, length)
    const bad = this.malformed[stream]
    let broken = false
    for (let i = from; i < to && bad.size > 0; i++) if (bad.has(i + 1)) broken = true
    const rendered = this.rendered?.[stream]
    let body: string
    if (rendered !== undefined) {
      // starts[i] is where item i begins; the comma after the last item of the page is left out.
      const list = from === to ? EMPTY : rendered.bytes.subarray(rendered.starts[from], rendered.starts[to]! - 1)
      const bytes = Buffer.concat([PAGE_HEAD, list, to < length ? PAGE_TAIL_MORE : PAGE_TAIL_LAST])
      if (!broken) return bytes
      body = bytes.toString('utf8')
    } else {
      const list: Record<string, unknown>[] = []
      for (let i = from; i < to; i++) list.push(this.renderItem(stream, i))
      body = JSON.stringify({ code: 0, msg: 'success', data: { list, hasMore: to < length } })
    }
    return broken ? body.slice(0, Math.floor(body.length * 0.6)) : body
  }

  private renderItem(stream: SimStream, i: number): Record<string, unknown> {
    return stream === 'space' ? this.renderSpace(i) : this.renderPassage(stream, i)
  }

  /**
   * Renders every item's JSON once, after generateBulk: a benchmark's upstream
   * then serves pages by joining strings, and what it measures is citysync's
   * work, not the simulator's. The pages served are byte for byte the same.
   */
  prerender(): { items: number; ms: number } {
    if (!this.finished) throw new Error('prerender needs a finished generation (generateBulk)')
    const t0 = performance.now()
    const out = {} as Record<SimStream, RenderedStream>
    let items = 0
    for (const stream of ['in', 'out', 'space'] as const) {
      const n = this.streamLength(stream)
      const parts: Buffer[] = []
      const starts = new Int32Array(n + 1)
      let at = 0
      for (let i = 0; i < n; i++) {
        const item = Buffer.from(JSON.stringify(this.renderItem(stream, i)) + ',')
        starts[i] = at
        at += item.length
        parts.push(item)
      }
      starts[n] = at
      out[stream] = { bytes: Buffer.concat(parts, at), starts }
      items += n
    }
    this.rendered = out
    return { items, ms: performance.now() - t0 }
  }

  private streamLength(stream: SimStream): number {
    return stream === 'in' ? this.entries.length : stream === 'out' ? this.exits.length : this.spaces.length
  }

  /** Number of items per stream generated so far (without advancing). */
  counts(): Record<SimStream, number> {
    return { in: this.entries.length, out: this.exits.length, space: this.spaces.length }
  }

  /** Whether generation has stopped (maxEvents reached or after generateBulk). */
  get done(): boolean {
    return this.finished
  }


  /**
   * Every valid passage record served so far or to be served for the time
   * that has passed (generation is advanced to clock.now() first). Excludes
   * defective items, duplicates and items only ever served inside a malformed page.
   */
  truth(): TruthPassage[] {
    this.advance()
    const out: TruthPassage[] = []
    for (const stream of ['in', 'out'] as const) {
      const s = stream === 'in' ? this.entries : this.exits
      const bad = this.malformed[stream]
      for (let i = 0; i < s.length; i++) {
        if (s.defect[i] !== 0 || bad.has(i + 1)) continue
        out.push({
          type: stream,
          seq: i + 1,
          recordNo: this.recordNo(stream, i),
          parkCode: this.lots[s.lot[i]!]!.parkCode,
          occurredAt: stream === 'in' ? s.inTime[i]! : s.outTime[i]!,
          isReupload: s.reupload[i] === 1,
          feeCents: stream === 'in' ? null : s.fee[i]!,
        })
      }
    }
    return out
  }

  /** Every valid free-space report (see truth()). */
  spaceTruth(): TruthSpace[] {
    this.advance()
    const out: TruthSpace[] = []
    const s = this.spaces
    const bad = this.malformed.space
    for (let i = 0; i < s.length; i++) {
      if (s.defect[i] !== 0 || bad.has(i + 1)) continue
      const lot = this.lots[s.lot[i]!]!
      out.push({ seq: i + 1, parkCode: lot.parkCode, freeSpace: s.free[i]!, totalSpace: lot.totalSpace, reportTime: s.time[i]! })
    }
    return out
  }

  /** Every injected defect so far, with the code a consumer should raise for it. */
  badRecords(): BadRecord[] {
    this.advance()
    const out: BadRecord[] = []
    const add = (type: SimStream, i: number, defect: Defect, recordNo: string | null, lot: number): void => {
      out.push({ type, seq: i + 1, recordNo, parkCode: this.lots[lot]!.parkCode, defect, ...DEFECT_EXPECTATIONS[defect] })
    }
    for (const stream of ['in', 'out'] as const) {
      const s = stream === 'in' ? this.entries : this.exits
      const bad = this.malformed[stream]
      for (let i = 0; i < s.length; i++) {
        const d = bad.has(i + 1) ? 'malformed_json' : s.defect[i] !== 0 ? (DEFECTS[s.defect[i]!] as Defect) : null
        if (d !== null) add(stream, i, d, this.recordNo(stream, i), s.lot[i]!)
      }
    }
    const s = this.spaces
    for (let i = 0; i < s.length; i++) {
      const d = this.malformed.space.has(i + 1) ? 'malformed_json' : s.defect[i] !== 0 ? (DEFECTS[s.defect[i]!] as Defect) : null
      if (d !== null) add('space', i, d, null, s.lot[i]!)
    }
    return out
  }


  get url(): string {
    if (this.baseUrl === null) throw new Error('simulator is not started')
    return this.baseUrl
  }

  /** Requests answered per path, for tests. */
  requests(path: string): number {
    return this.requestCounts.get(path) ?? 0
  }

  /** Requests served on every path since start. */
  totalRequests(): number {
    let n = 0
    for (const c of this.requestCounts.values()) n += c
    return n
  }

  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    if (this.server !== null) return this.url
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, { code: 500, msg: String(err), data: null })
        else res.destroy()
      })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.server = server
    const address = server.address() as AddressInfo
    this.baseUrl = `http://${host}:${address.port}`
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

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://simulator')
    this.requestCounts.set(url.pathname, (this.requestCounts.get(url.pathname) ?? 0) + 1)
    if (this.slowMs > 0) await sleep(this.slowMs)
    if (this.outageOn) return send(res, 503, { code: 503, msg: 'service unavailable', data: null })
    if (req.method !== 'GET') return send(res, 405, { code: 405, msg: 'method not allowed', data: null })
    if (this.appKey !== undefined && req.headers['x-app-key'] !== this.appKey) {
      return send(res, 200, { code: 401, msg: 'invalid app key', data: null })
    }
    switch (url.pathname) {
      case '/openapi/v1/parks':
        return send(res, 200, { code: 0, msg: 'success', data: this.parks() })
      case '/openapi/v1/records': {
        const type = url.searchParams.get('type')
        if (type !== 'in' && type !== 'out') return send(res, 400, { code: 400, msg: 'type must be in or out', data: null })
        return this.sendPage(res, type, url)
      }
      case '/openapi/v1/space':
        return this.sendPage(res, 'space', url)
      default:
        return send(res, 404, { code: 404, msg: 'not found', data: null })
    }
  }

  private sendPage(res: ServerResponse, stream: SimStream, url: URL): void {
    const afterSeq = intParam(url, 'afterSeq', 0)
    const limit = intParam(url, 'limit', 100)
    if (afterSeq === null || afterSeq < 0) return send(res, 400, { code: 400, msg: 'afterSeq must be an integer >= 0', data: null })
    if (limit === null || limit < 1 || limit > MAX_PAGE_LIMIT) {
      return send(res, 400, { code: 400, msg: `limit must be an integer 1..${MAX_PAGE_LIMIT}`, data: null })
    }
    const body = this.pageBody(stream, afterSeq, limit)
    if (typeof body === 'string') return sendText(res, 200, body)
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length })
    res.end(body)
  }
}

// The platform writes times to the second.
function wholeSecond(t: number): number {
  return Math.floor(t / 1000) * 1000
}

function toMalformed(seqs: Partial<Record<SimStream, readonly number[]>> | undefined): Record<SimStream, Set<number>> {
  return { in: new Set(seqs?.in ?? []), out: new Set(seqs?.out ?? []), space: new Set(seqs?.space ?? []) }
}

function intParam(url: URL, name: string, fallback: number): number | null {
  const text = url.searchParams.get(name)
  if (text === null || text === '') return fallback
  if (!/^\d{1,15}$/.test(text)) return null
  return Number(text)
}

function send(res: ServerResponse, status: number, body: unknown): void {
  sendText(res, status, JSON.stringify(body))
}

interface RenderedStream {
  /** Each item's JSON followed by a comma. */
  bytes: Buffer
  /** Byte offset of each item, and the total length at [n]. */
  starts: Int32Array
}

const PAGE_HEAD = Buffer.from('{"code":0,"msg":"success","data":{"list":[')
const PAGE_TAIL_MORE = Buffer.from('],"hasMore":true}}')
const PAGE_TAIL_LAST = Buffer.from('],"hasMore":false}}')
const EMPTY = Buffer.alloc(0)

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}
