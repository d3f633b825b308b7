// Static catalogue for the ferry-terminal simulator: two Zhuhai terminals with
// their routes to Hong Kong and Shenzhen, daily timetables, vessels, fares and
// gates, plus the per-device quirks real terminals have (old turnstiles that
// write epoch seconds, a gate whose clock runs fast).

export interface SimGate {
  gateNo: string
  /** Writes checkTime in epoch seconds instead of milliseconds (older turnstile model). */
  epochSeconds: boolean
  /** How far the gate's own clock runs ahead of true time. */
  clockAheadMs: number
}

export interface SimRoute {
  routeCode: string
  routeName: string
  /** Scheduled departures, local "HH:mm", ascending. */
  departures: readonly string[]
  crossingMinutes: number
  /** Adult fare in fen. */
  fareCents: number
}

export interface SimTerminal {
  terminalCode: string
  terminalName: string
  address: string
  routes: readonly SimRoute[]
  gates: readonly SimGate[]
  vessels: readonly { name: string; seats: number }[]
  /** actualDepartTime is written in epoch seconds by this terminal's dispatch system. */
  departEpochSeconds: boolean
}

export const TERMINALS: readonly SimTerminal[] = [
  {
    terminalCode: 'HQT',
    terminalName: '横琴码头',
    address: '广东省珠海市横琴粤澳深度合作区环岛东路横琴码头',
    routes: [
      {
        routeCode: 'HQT-HKK',
        routeName: '横琴—香港中港城',
        departures: ['08:30', '10:00', '11:30', '13:30', '15:30', '17:30', '19:30'],
        crossingMinutes: 75,
        fareCents: 17500,
      },
      {
        routeCode: 'HQT-HKA',
        routeName: '横琴—香港国际机场',
        departures: ['09:15', '13:15', '17:15'],
        crossingMinutes: 50,
        fareCents: 26500,
      },
    ],
    gates: [
      { gateNo: 'G1', epochSeconds: false, clockAheadMs: 0 },
      { gateNo: 'G2', epochSeconds: false, clockAheadMs: 0 },
      { gateNo: 'G3', epochSeconds: false, clockAheadMs: 3 * 60_000 },
    ],
    vessels: [
      { name: '横琴之星', seats: 248 },
      { name: '海天号', seats: 196 },
      { name: '珠江明珠', seats: 310 },
    ],
    departEpochSeconds: false,
  },
  {
    terminalCode: 'JZG',
    terminalName: '九洲港客运码头',
    address: '广东省珠海市香洲区情侣南路599号',
    routes: [
      {
        routeCode: 'JZG-HKM',
        routeName: '九洲港—香港港澳码头',
        departures: ['07:30', '08:30', '09:30', '11:00', '12:30', '14:00', '15:30', '17:00', '18:30', '20:00', '21:30'],
        crossingMinutes: 70,
        fareCents: 17500,
      },
      {
        routeCode: 'JZG-SKP',
        routeName: '九洲港—深圳蛇口',
        departures: ['08:00', '10:00', '12:00', '14:00', '16:00', '18:00', '20:00'],
        crossingMinutes: 60,
        fareCents: 12500,
      },
      {
        routeCode: 'JZG-SZA',
        routeName: '九洲港—深圳宝安机场',
        departures: ['09:00', '13:00', '17:00'],
        crossingMinutes: 65,
        fareCents: 14000,
      },
    ],
    gates: [
      { gateNo: 'A1', epochSeconds: true, clockAheadMs: 0 },
      { gateNo: 'A2', epochSeconds: true, clockAheadMs: 0 },
      { gateNo: 'B1', epochSeconds: false, clockAheadMs: 0 },
      { gateNo: 'B2', epochSeconds: false, clockAheadMs: 0 },
    ],
    vessels: [
      { name: '海珠星', seats: 288 },
      { name: '港珠澳之星', seats: 332 },
      { name: '飞鹰号', seats: 224 },
      { name: '珠海号', seats: 264 },
    ],
    departEpochSeconds: true,
  },
]

export const TICKET_TYPES = ['ADULT', 'CHILD', 'SENIOR'] as const
export type SimTicketType = (typeof TICKET_TYPES)[number]
/** Share of each ticket type, and its fare as a fraction of the adult fare. */
export const TICKET_TYPE_MIX: Record<SimTicketType, { share: number; fareFactor: number }> = {
  ADULT: { share: 0.8, fareFactor: 1 },
  CHILD: { share: 0.12, fareFactor: 0.5 },
  SENIOR: { share: 0.08, fareFactor: 0.5 },
}

export const CHANNELS = ['WINDOW', 'KIOSK', 'APP', 'MINIAPP', 'OTA'] as const
export type SimChannel = (typeof CHANNELS)[number]
/** Channel shares; WINDOW and KIOSK sell only inside the terminal during opening hours. */
export const CHANNEL_MIX: Record<SimChannel, number> = { WINDOW: 0.22, KIOSK: 0.06, APP: 0.3, MINIAPP: 0.32, OTA: 0.1 }

/** Terminal ticket halls open 06:00-22:00 local. */
export const HALL_OPEN_HOUR = 6
export const HALL_CLOSE_HOUR = 22

/** Relative demand by local departure hour (morning and late-afternoon peaks). */
export function demandByHour(hour: number): number {
  if (hour < 9) return 0.75
  if (hour < 12) return 0.9
  if (hour < 15) return 0.7
  if (hour < 19) return 0.95
  return 0.6
}

/** Picks from a weight table with one uniform draw. */
export function pickWeighted<K extends string>(weights: Record<K, number>, u: number): K {
  const keys = Object.keys(weights) as K[]
  const total = keys.reduce((s, k) => s + weights[k], 0)
  let acc = 0
  for (const k of keys) {
    acc += weights[k] / total
    if (u < acc) return k
  }
  return keys[keys.length - 1]!
}
