// Plates inside free text: error messages, dead-letter reasons, raw payloads
// that are not JSON, log lines, API answers. Stored plate fields are
// protected field by field (protectPlate); this is the net under everything
// else, so that a plate quoted by a parser error or a vendor message is masked
// before it is stored, logged or sent.
//
// What counts as a plate here (Chinese plates, GA 36):
//   prefix     a province abbreviation, 使 / 领, or 港 / 澳 (cross-border and Macau
//              plates); also the same characters as JSON \uXXXX escapes
//   letter     the issuing-office letter, ASCII or full-width
//   serial     4 to 6 letters or digits (5 usual, 6 on new-energy plates)
//   suffix     optional 挂 学 警 港 澳 领 试 超 使
// with an optional space, middle dot or hyphen after the prefix and after the
// letter. A longer run of letters and digits is masked in its first part too:
// masking a little too much is the safe side.

import { type LoggerOptions } from 'pino'
import { maskPlate } from './crypto.ts'

const PREFIXES = '京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领港澳'
const ESCAPED_PREFIXES = [...PREFIXES].map((c) => `\\\\u${c.charCodeAt(0).toString(16)}`).join('|')
const LETTER = 'A-Za-z\\uFF21-\\uFF3A\\uFF41-\\uFF5A'
const ALNUM = `${LETTER}0-9\\uFF10-\\uFF19`
const SEP = '[ \\u00B7\\u2022\\u30FB\\-]?'

const PLATE_IN_TEXT = new RegExp(`(?:[${PREFIXES}]|${ESCAPED_PREFIXES})${SEP}[${LETTER}]${SEP}[${ALNUM}]{4,6}[挂学警港澳领试超使]?`, 'gi')
const ESCAPE = /^\\u([0-9a-fA-F]{4})/

function maskMatch(found: string): string {
  const unescaped = found.replace(ESCAPE, (_all, hex: string) => String.fromCharCode(parseInt(hex, 16)))
  return maskPlate(unescaped)
}

/** `text` with every plate-shaped run masked as maskPlate does ('粤C12345' → '粤C·***45'). Idempotent. */
export function scrubPlates(text: string): string {
  return text.replace(PLATE_IN_TEXT, maskMatch)
}

/** True when `text` holds something plate-shaped in clear. */
export function hasPlate(text: string): boolean {
  PLATE_IN_TEXT.lastIndex = 0
  const found = PLATE_IN_TEXT.test(text)
  PLATE_IN_TEXT.lastIndex = 0
  return found
}

// V8 quotes up to ten characters either side of the fault:
//   Unexpected token 'x', ..."lateNo":"粤C1234"... is not valid JSON
// and such an excerpt can cut a plate so that no pattern recognises what is left.
const JSON_EXCERPT = /,\s*(?:\.\.\.)?"[\s\S]*"(?:\.\.\.)?\s+is not valid JSON$/

/** A JSON.parse error's message without the excerpt of the input V8 puts in some of them. */
export function jsonErrorText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  return scrubPlates(message.replace(JSON_EXCERPT, ' in JSON'))
}

/** Field names that carry a plate, in our events and in vendor payloads (车牌号, hphm = 号牌号码, cph = 车牌号). */
export const PLATE_FIELD = /plate|车牌|号牌|carno|car_no|vehicleno|licen[cs]e|^hphm$|^cph$/i

// Known plate fields are masked by pino before serialising (belt), and every
// line is scrubbed on its way to the stream (braces).
const REDACT_PATHS = ['plate', 'plateNo', '*.plate', '*.plateNo', '*.*.plate', '*.*.plateNo', 'config.appKey']

/** pino options every citysync logger uses: `pino({ level, ...PLATE_SAFE_LOGGING })`. */
export const PLATE_SAFE_LOGGING: Pick<LoggerOptions, 'redact' | 'hooks'> = {
  redact: {
    paths: REDACT_PATHS,
    censor: (value: unknown, path: string[]) => (path[path.length - 1] === 'appKey' || typeof value !== 'string' ? '[Redacted]' : maskPlate(value)),
  },
  hooks: { streamWrite: scrubPlates },
}
