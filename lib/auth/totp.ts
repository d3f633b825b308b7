import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

// One-time codes for the second login factor.
//
// HOTP (RFC 4226): HMAC(key, counter as 8-byte big-endian), then "dynamic
// truncation": the low 4 bits of the last byte give an offset o; the 31-bit
// big-endian integer at bytes o..o+3 modulo 10^digits is the code.
// TOTP (RFC 6238): HOTP with counter = floor((unix seconds − T0) / step), T0 = 0.
// Secrets travel as base32 (RFC 4648, no padding), as authenticator apps expect.

export type TotpAlgorithm = 'sha1' | 'sha256' | 'sha512'

export interface TotpOptions {
  /** Seconds per step (30). */
  step: number
  digits: number
  algorithm: TotpAlgorithm
  /** Steps accepted either side of now, for clock drift (1). */
  window: number
}

export const TOTP_DEFAULTS: TotpOptions = { step: 30, digits: 6, algorithm: 'sha1', window: 1 }
/** 20 bytes: the HMAC-SHA1 block-size recommendation of RFC 4226. */
export const TOTP_SECRET_BYTES = 20

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

export function base32Encode(bytes: Buffer): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff
    bits += 8
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31]
  return out
}

/** Accepts lower case, spaces and '=' padding, as people copy secrets; throws on any other character. */
export function base32Decode(text: string): Buffer {
  const clean = text.replace(/[\s=]/g, '').toUpperCase()
  const out: number[] = []
  let bits = 0
  let value = 0
  for (const ch of clean) {
    const v = ALPHABET.indexOf(ch)
    if (v < 0) throw new Error(`not base32: ${JSON.stringify(ch)}`)
    value = ((value << 5) | v) & 0xffff
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Buffer.from(out)
}

export function generateTotpSecret(): string {
  return base32Encode(randomBytes(TOTP_SECRET_BYTES))
}

export function hotp(key: Buffer, counter: number, digits = 6, algorithm: TotpAlgorithm = 'sha1'): string {
  const msg = Buffer.alloc(8)
  msg.writeBigUInt64BE(BigInt(counter))
  const mac = createHmac(algorithm, key).update(msg).digest()
  const offset = mac[mac.length - 1]! & 0x0f
  const binary = mac.readUInt32BE(offset) & 0x7fffffff
  return String(binary % 10 ** digits).padStart(digits, '0')
}

export function totpStep(nowMs: number, step = TOTP_DEFAULTS.step): number {
  return Math.floor(nowMs / 1000 / step)
}

/** The code for instant `nowMs`; `secret` is base32. */
export function totp(secret: string, nowMs: number, options: Partial<TotpOptions> = {}): string {
  const o = { ...TOTP_DEFAULTS, ...options }
  return hotp(base32Decode(secret), totpStep(nowMs, o.step), o.digits, o.algorithm)
}

/**
 * The step whose code `code` is, within the window around now, or undefined.
 * A step at or before `notAfterStep` (the last one used) is refused, so that a
 * code seen once cannot log in again.
 */
export function verifyTotp(secret: string, code: string, nowMs: number, options: Partial<TotpOptions> & { lastUsedStep?: number | null } = {}): number | undefined {
  const o = { ...TOTP_DEFAULTS, ...options }
  const given = code.replace(/\s/g, '')
  if (!new RegExp(`^\\d{${o.digits}}$`).test(given)) return undefined
  const key = base32Decode(secret)
  const now = totpStep(nowMs, o.step)
  let found: number | undefined
  // Every candidate is computed and compared, whichever matches.
  for (let s = now - o.window; s <= now + o.window; s++) {
    if (s < 0) continue
    const expected = hotp(key, s, o.digits, o.algorithm)
    if (timingSafeEqual(Buffer.from(expected), Buffer.from(given)) && found === undefined) found = s
  }
  if (found === undefined) return undefined
  if (options.lastUsedStep !== undefined && options.lastUsedStep !== null && found <= options.lastUsedStep) return undefined
  return found
}

/** otpauth://totp/ISSUER:ACCOUNT?… (the Key URI format authenticator apps read from a QR code). */
export function otpauthUri(secret: string, account: string, issuer = 'citysync', options: Partial<TotpOptions> = {}): string {
  const o = { ...TOTP_DEFAULTS, ...options }
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`
  const query = new URLSearchParams({ secret, issuer, algorithm: o.algorithm.toUpperCase(), digits: String(o.digits), period: String(o.step) })
  return `otpauth://totp/${label}?${query.toString()}`
}
