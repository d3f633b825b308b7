import { createCipheriv, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Sm4 } from './sm4.ts'

describe('Sm4', () => {
  it('gives the standard example (GB/T 32907 appendix A), once and a million times over', () => {
    const key = Buffer.from('0123456789abcdeffedcba9876543210', 'hex')
    const block = Buffer.from(key)
    const sm4 = new Sm4(key)
    sm4.encryptBlock(block, 0)
    expect(block.toString('hex')).toBe('681edf34d206965e86b3e94f536e4246')
    for (let i = 1; i < 1_000_000; i++) sm4.encryptBlock(block, 0)
    expect(block.toString('hex')).toBe('595298c7c6fd271f0402f804c33d3f66')
  })

  it('equals OpenSSL sm4-ecb for random keys and blocks, at any offset', () => {
    for (let k = 0; k < 200; k++) {
      const key = randomBytes(16)
      const sm4 = new Sm4(key)
      const ecb = createCipheriv('sm4-ecb', key, null).setAutoPadding(false)
      for (let b = 0; b < 50; b++) {
        const plain = randomBytes(16)
        const at = b % 7
        const buf = Buffer.alloc(at + 16 + 3, 0xee)
        plain.copy(buf, at)
        sm4.encryptBlock(buf, at)
        expect(buf.subarray(at, at + 16).toString('hex')).toBe(ecb.update(plain).toString('hex'))
        expect(buf[at - 1] ?? 0xee).toBe(0xee)
        expect(buf[at + 16]).toBe(0xee)
      }
    }
  })

  it('refuses a key that is not 128 bits', () => {
    expect(() => new Sm4(Buffer.alloc(15))).toThrow(/16 bytes/)
    expect(() => new Sm4(Buffer.alloc(32))).toThrow(/16 bytes/)
  })
})
