// Deterministic building blocks for the car-park simulator: a seeded RNG, a
// catalogue of realistic lots around a city centre, plate numbers and fees.

/** mulberry32: small, fast, good enough for simulation, fully determined by the seed. */
export function createRng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Stateless hash of a few integers to a uint32, for choices made when a page is rendered. */
export function hash32(a: number, b: number, c: number, d = 0): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13) ^ b, 0xc2b2ae35)
  h = Math.imul(h ^ (h >>> 16) ^ c, 0x27d4eb2f)
  h = Math.imul(h ^ (h >>> 15) ^ d, 0x165667b1)
  return (h ^ (h >>> 16)) >>> 0
}

export interface SimLot {
  parkCode: string
  parkName: string
  totalSpace: number
  lng: number
  lat: number
  address: string
  openTime: '00:00-24:00' | '07:00-22:00'
  entryGates: string[]
  exitGates: string[]
  /** Tariff: fen per started half hour after the free period, capped per day. */
  halfHourCents: number
  freeMinutes: number
  dailyCapCents: number
}

const CATALOGUE: readonly (readonly [string, string])[] = [
  ['横琴口岸P1停车场', '广东省珠海市横琴粤澳深度合作区港澳大道1号横琴口岸综合服务区'],
  ['横琴口岸P2停车场', '广东省珠海市横琴粤澳深度合作区港澳大道1号横琴口岸东侧'],
  ['长隆海洋王国停车场', '广东省珠海市横琴粤澳深度合作区富祥湾长隆国际海洋度假区'],
  ['横琴创新方停车场', '广东省珠海市横琴粤澳深度合作区环岛东路3000号'],
  ['南通大学停车场', '江苏省南通市崇川区啬园路9号'],
  ['十字门中央商务区停车场', '广东省珠海市横琴粤澳深度合作区汇通三路'],
  ['横琴科学城停车场', '广东省珠海市横琴粤澳深度合作区环岛北路2515号'],
  ['粤澳合作中医药科技产业园停车场', '广东省珠海市横琴粤澳深度合作区环岛北路'],
  ['天沐河公园停车场', '广东省珠海市横琴粤澳深度合作区天羽道'],
  ['横琴国际商务中心停车场', '广东省珠海市横琴粤澳深度合作区宝华路6号'],
  ['星乐度露营小镇停车场', '广东省珠海市横琴粤澳深度合作区环岛东路'],
  ['横琴医院停车场', '广东省珠海市横琴粤澳深度合作区环岛东路3000号'],
]

const RATES = [200, 250, 300, 400] as const
const CAPS = [4000, 6000, 8000] as const

export function buildLots(count: number, center: { lng: number; lat: number }, rand: () => number): SimLot[] {
  const lots: SimLot[] = []
  const width = count > 99 ? 3 : 2
  for (let i = 0; i < count; i++) {
    const [name, address] = CATALOGUE[i % CATALOGUE.length]!
    const round = Math.floor(i / CATALOGUE.length)
    const totalSpace = 80 + Math.floor(rand() * 1121)
    const gates = Math.min(4, 1 + Math.floor(totalSpace / 400))
    lots.push({
      parkCode: `HQ${String(i + 1).padStart(width, '0')}`,
      parkName: round === 0 ? name : `${name.replace(/停车场$/, '')}${round + 1}号停车场`,
      totalSpace,
      lng: round6(center.lng + (rand() - 0.5) * 0.06),
      lat: round6(center.lat + (rand() - 0.5) * 0.06),
      address,
      openTime: i % 4 === 3 ? '07:00-22:00' : '00:00-24:00',
      entryGates: Array.from({ length: gates }, (_, g) => `E${g + 1}`),
      exitGates: Array.from({ length: gates }, (_, g) => `X${g + 1}`),
      halfHourCents: RATES[Math.floor(rand() * RATES.length)]!,
      freeMinutes: rand() < 0.5 ? 15 : 30,
      dailyCapCents: CAPS[Math.floor(rand() * CAPS.length)]!,
    })
  }
  return lots
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6
}

export const PLATE_COLORS = ['blue', 'green', 'yellow', 'black'] as const
export type PlateColor = (typeof PLATE_COLORS)[number]

// Letters used on mainland plates: no I or O.
const LETTERS = 'ABCDEFGHJKLMNPQRSTUVWXYZ'
const OTHER_PREFIXES = ['粤A', '粤B', '粤E', '粤Y', '湘A', '赣A', '桂A', '川A', '鄂A', '闽D'] as const

function digit(rand: () => number): string {
  return String(Math.floor(rand() * 10))
}

function letter(rand: () => number): string {
  return LETTERS[Math.floor(rand() * LETTERS.length)]!
}

/** Five plate characters: digits, with a letter in one of the first two places now and then. */
function serial5(rand: () => number): string {
  let s = ''
  const letterAt = rand() < 0.35 ? Math.floor(rand() * 2) : -1
  for (let i = 0; i < 5; i++) s += i === letterAt ? letter(rand) : digit(rand)
  return s
}

/** A plausible plate seen at a Hengqin car park and its colour. */
export function randomPlate(rand: () => number): { plate: string; color: PlateColor } {
  const r = rand()
  if (r < 0.07) {
    // Macau single-plate vehicles crossing at Hengqin.
    return { plate: `澳M${letter(rand)}${digit(rand)}${digit(rand)}${digit(rand)}${digit(rand)}`, color: 'black' }
  }
  if (r < 0.33) {
    // New-energy small vehicles: D (battery) or F (hybrid) then five digits.
    const kind = rand() < 0.8 ? 'D' : 'F'
    let s = ''
    for (let i = 0; i < 5; i++) s += digit(rand)
    return { plate: `粤C${kind}${s}`, color: 'green' }
  }
  if (r < 0.38) return { plate: `粤C${serial5(rand)}`, color: 'yellow' }
  if (r < 0.53) {
    const prefix = OTHER_PREFIXES[Math.floor(rand() * OTHER_PREFIXES.length)]!
    return { plate: `${prefix}${serial5(rand)}`, color: 'blue' }
  }
  return { plate: `粤C${serial5(rand)}`, color: 'blue' }
}

const HALF_HOUR = 1_800_000
const DAY = 86_400_000

/** Fee in fen for a stay: free period, then per started half hour, capped per 24 h. */
export function feeCents(lot: SimLot, stayMs: number, color: PlateColor): number {
  if (stayMs <= lot.freeMinutes * 60_000) return 0
  const days = Math.floor(stayMs / DAY)
  const rest = stayMs - days * DAY
  const halves = Math.ceil(rest / HALF_HOUR)
  let fee = days * lot.dailyCapCents + Math.min(lot.dailyCapCents, halves * lot.halfHourCents)
  // New-energy vehicles park at half price in Zhuhai public car parks.
  if (color === 'green') fee = Math.round(fee / 2)
  return fee
}

/** Relative arrival intensity by local hour (mean 1). */
const PROFILE_RAW = [
  0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.5, 1.1, 1.7, 1.6, 1.4, 1.3, 1.3, 1.3, 1.35, 1.4, 1.5, 1.7, 1.6, 1.3, 1.0, 0.8, 0.5, 0.3,
]
const PROFILE_MEAN = PROFILE_RAW.reduce((a, b) => a + b, 0) / PROFILE_RAW.length
export const ARRIVAL_PROFILE: readonly number[] = PROFILE_RAW.map((x) => x / PROFILE_MEAN)
export const ARRIVAL_PROFILE_MAX = Math.max(...ARRIVAL_PROFILE)

/** Length of a stay: mostly short visits, some long ones, a few overnight. */
export function randomStay(rand: () => number): number {
  const r = rand()
  const min = 60_000
  if (r < 0.7) return Math.round((10 + Math.pow(rand(), 1.6) * 170) * min) // 10 min .. 3 h
  if (r < 0.95) return Math.round((180 + rand() * 300) * min) // 3 .. 8 h
  return Math.round((600 + rand() * 720) * min) // 10 .. 22 h, overnight
}
