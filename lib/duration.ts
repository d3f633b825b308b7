import { CitysyncError } from './errors.ts'

const UNIT_MS = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
} as const
type Unit = keyof typeof UNIT_MS

// Largest unit first, so that formatDuration emits '1h30m' rather than '90m'.
const FORMAT_UNITS: readonly Unit[] = ['d', 'h', 'm', 's', 'ms']

// One or more <number><unit> parts, largest first or not: '1h30m', '1.5h', '500ms'.
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g

/**
 * Milliseconds from '2h', '90m', '30s', '1h30m', '500ms', '1d' (or a number of
 * milliseconds). Throws CITYSYNC_ERR_CONFIG_INVALID for anything else.
 */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw invalid(input)
    return Math.round(input)
  }
  const text = input.trim().toLowerCase()
  if (!WHOLE.test(text)) throw invalid(input)
  let total = 0
  for (const [, amount, unit] of text.matchAll(PART)) {
    total += Number(amount) * UNIT_MS[unit as Unit]
  }
  return Math.round(total)
}

export function isDuration(input: unknown): boolean {
  if (typeof input !== 'string' && typeof input !== 'number') return false
  try {
    parseDuration(input)
    return true
  } catch {
    return false
  }
}

/** '1h30m', '2d', '500ms', '0s'; parseDuration(formatDuration(x)) === x for whole ms. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms)
  if (ms < 0) return `-${formatDuration(-ms)}`
  let rest = Math.round(ms)
  if (rest === 0) return '0s'
  let out = ''
  for (const unit of FORMAT_UNITS) {
    const size = UNIT_MS[unit]
    const n = Math.floor(rest / size)
    if (n > 0) {
      out += `${n}${unit}`
      rest -= n * size
    }
  }
  return out
}

function invalid(input: unknown): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [
    `${JSON.stringify(input)} is not a duration (expected e.g. 30s, 5m, 1h30m, 500ms, 1d)`,
  ])
}
