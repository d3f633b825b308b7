import { createHash, createHmac, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Sm3Hmac, sm3 } from './sm3.ts'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

describe('sm3', () => {
  it('gives the standard test vectors (GB/T 32905 appendix A)', () => {
    expect(hex(sm3('abc'))).toBe('66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0')
    expect(hex(sm3('abcd'.repeat(16)))).toBe('debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732')
  })

  it('equals OpenSSL for every length across the padding boundaries and for multi-block input', () => {
    for (let n = 0; n <= 300; n++) {
      const data = randomBytes(n)
      expect(hex(sm3(data)), `length ${n}`).toBe(createHash('sm3').update(data).digest('hex'))
    }
    const big = randomBytes(5000)
    expect(hex(sm3(big))).toBe(createHash('sm3').update(big).digest('hex'))
  })

  it('hashes strings as UTF-8', () => {
    for (const s of ['', '粤C12345', '京A·D1234', 'é'.repeat(100)]) {
      expect(hex(sm3(s))).toBe(createHash('sm3').update(s, 'utf8').digest('hex'))
    }
  })
})

describe('Sm3Hmac', () => {
  it('equals OpenSSL HMAC-SM3 for keys shorter than, equal to and longer than a block, and any message length', () => {
    for (const keyLength of [1, 16, 32, 63, 64, 65, 200]) {
      const key = randomBytes(keyLength)
      const mac = new Sm3Hmac(key)
      for (let n = 0; n <= 150; n += 7) {
        const data = randomBytes(n)
        expect(mac.hex(data), `key ${keyLength}, message ${n}`).toBe(createHmac('sm3', key).update(data).digest('hex'))
      }
    }
  })

  it('writes a truncated MAC into a buffer and keeps no state between calls', () => {
    const key = randomBytes(16)
    const mac = new Sm3Hmac(key)
    const out = Buffer.alloc(20, 0xee)
    mac.into('粤C12345', out, 2, 16)
    expect(out.subarray(2, 18).toString('hex')).toBe(createHmac('sm3', key).update('粤C12345').digest('hex').slice(0, 32))
    expect(out[0]).toBe(0xee)
    expect(out[18]).toBe(0xee)
    expect(mac.hex('x')).toBe(mac.hex('x'))
    // A message longer than the scratch space the earlier calls needed.
    const long = 'plate-'.repeat(400)
    expect(mac.hex(long)).toBe(createHmac('sm3', key).update(long).digest('hex'))
    expect(mac.hex('x')).toBe(createHmac('sm3', key).update('x').digest('hex'))
  })
})
