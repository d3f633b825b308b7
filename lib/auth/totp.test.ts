import { createHmac } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { base32Decode, base32Encode, generateTotpSecret, hotp, otpauthUri, totp, verifyTotp } from './totp.ts'

// RFC 6238 appendix B: the seeds are the ASCII strings below, T0 = 0, X = 30 s, 8 digits.
const SEED = {
  sha1: Buffer.from('12345678901234567890'),
  sha256: Buffer.from('12345678901234567890123456789012'),
  sha512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234'),
}
const VECTORS: [seconds: number, sha1: string, sha256: string, sha512: string][] = [
  [59, '94287082', '46119246', '90693936'],
  [1111111109, '07081804', '68084774', '25091201'],
  [1111111111, '14050471', '67062674', '99943326'],
  [1234567890, '89005924', '91819424', '93441116'],
  [2000000000, '69279037', '90698825', '38618901'],
  [20000000000, '65353130', '77737706', '47863826'],
]

describe('TOTP (RFC 6238)', () => {
  it.each(VECTORS)('gives the RFC 6238 test vectors at T = %i', (seconds, sha1, sha256, sha512) => {
    for (const [algorithm, expected] of [['sha1', sha1], ['sha256', sha256], ['sha512', sha512]] as const) {
      expect(totp(base32Encode(SEED[algorithm]), seconds * 1000, { digits: 8, algorithm }), algorithm).toBe(expected)
    }
  })

  it('gives the RFC 4226 HOTP values for counters 0..9', () => {
    const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489']
    expect(expected.map((_, i) => hotp(SEED.sha1, i))).toEqual(expected)
  })

  it('accepts one step either side, not two, and never a step used before', () => {
    const secret = generateTotpSecret()
    const now = Date.parse('2026-11-21T04:00:15Z')
    const step = Math.floor(now / 30_000)
    const at = (s: number): string => hotp(base32Decode(secret), s)
    expect(verifyTotp(secret, at(step), now)).toBe(step)
    expect(verifyTotp(secret, at(step - 1), now)).toBe(step - 1)
    expect(verifyTotp(secret, at(step + 1), now)).toBe(step + 1)
    expect(verifyTotp(secret, at(step - 2), now)).toBeUndefined()
    expect(verifyTotp(secret, at(step + 2), now)).toBeUndefined()
    expect(verifyTotp(secret, at(step), now, { lastUsedStep: step })).toBeUndefined()
    expect(verifyTotp(secret, at(step + 1), now, { lastUsedStep: step })).toBe(step + 1)
    expect(verifyTotp(secret, `${at(step).slice(0, 3)} ${at(step).slice(3)}`, now)).toBe(step)
    expect(verifyTotp(secret, '12345', now)).toBeUndefined()
    expect(verifyTotp(secret, 'abcdef', now)).toBeUndefined()
  })

  it('truncates dynamically as RFC 4226 section 5.3 shows', () => {
    // Its worked example: HMAC-SHA-1 = 1f8698690e02ca16618550ef7f19da8e945b555a, offset 0xa, code 872921 (6 digits of 0x50ef7f19).
    const mac = Buffer.from('1f8698690e02ca16618550ef7f19da8e945b555a', 'hex')
    const offset = mac[19]! & 0x0f
    expect(offset).toBe(10)
    expect(String((mac.readUInt32BE(offset) & 0x7fffffff) % 1e6)).toBe('872921')
    // and our HOTP is that computation over node's HMAC
    const key = Buffer.from('secret key')
    const msg = Buffer.alloc(8)
    msg.writeBigUInt64BE(7n)
    const h = createHmac('sha1', key).update(msg).digest()
    const o = h[19]! & 0x0f
    expect(hotp(key, 7)).toBe(String((h.readUInt32BE(o) & 0x7fffffff) % 1e6).padStart(6, '0'))
  })
})

describe('base32 (RFC 4648)', () => {
  it('encodes and decodes the RFC 4648 test vectors', () => {
    const vectors: [string, string][] = [['', ''], ['f', 'MY'], ['fo', 'MZXQ'], ['foo', 'MZXW6'], ['foob', 'MZXW6YQ'], ['fooba', 'MZXW6YTB'], ['foobar', 'MZXW6YTBOI']]
    for (const [plain, encoded] of vectors) {
      expect(base32Encode(Buffer.from(plain))).toBe(encoded)
      expect(base32Decode(encoded).toString()).toBe(plain)
    }
    expect(base32Decode('mzxw 6ytb oi======').toString()).toBe('foobar')
    expect(() => base32Decode('MZXW1')).toThrow(/not base32/)
  })

  it('makes 160-bit secrets', () => {
    const s = generateTotpSecret()
    expect(s).toMatch(/^[A-Z2-7]{32}$/)
    expect(base32Decode(s)).toHaveLength(20)
  })
})

describe('otpauth URI', () => {
  it('names issuer and account and carries the parameters authenticator apps read', () => {
    const uri = otpauthUri('JBSWY3DPEHPK3PXP', 'li.gong@bureau')
    expect(uri).toBe('otpauth://totp/citysync:li.gong%40bureau?secret=JBSWY3DPEHPK3PXP&issuer=citysync&algorithm=SHA1&digits=6&period=30')
  })
})
