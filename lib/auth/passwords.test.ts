import { describe, expect, it } from 'vitest'
import { hashPassword, needsRehash, parseHash, passwordProblem, verifyPassword } from './passwords.ts'

// A low cost keeps the unit tests quick; the format and the checks are the same.
const CHEAP = { ln: 10, r: 8, p: 1 }

describe('password hashes', () => {
  it('are self-describing scrypt strings with a random salt', async () => {
    const a = await hashPassword('correct horse battery', CHEAP)
    const b = await hashPassword('correct horse battery', CHEAP)
    expect(a).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
    expect(a).not.toBe(b)
    expect(parseHash(a)).toMatchObject({ params: CHEAP })
    expect(parseHash(a)!.salt).toHaveLength(16)
    expect(parseHash(a)!.key).toHaveLength(32)
  })

  it('verify the right password only', async () => {
    const h = await hashPassword('correct horse battery', CHEAP)
    expect(await verifyPassword('correct horse battery', h)).toBe(true)
    expect(await verifyPassword('correct horse batterY', h)).toBe(false)
    expect(await verifyPassword('', h)).toBe(false)
    expect(await verifyPassword('correct horse battery', 'plain text')).toBe(false)
    // Changing one character of the stored key breaks it.
    const tampered = h.slice(0, -2) + (h.endsWith('A') ? 'BA' : 'AA')
    expect(await verifyPassword('correct horse battery', tampered)).toBe(false)
  })

  it('read their cost from the string, so older hashes keep working and are flagged for rehash', async () => {
    const old = await hashPassword('correct horse battery', { ln: 11, r: 8, p: 1 })
    expect(await verifyPassword('correct horse battery', old)).toBe(true)
    expect(needsRehash(old)).toBe(true)
    expect(needsRehash(old, { ln: 11, r: 8, p: 1 })).toBe(false)
  })

  it('NFKC-normalise the password (full-width and half-width forms are the same password)', async () => {
    const h = await hashPassword('ｃｏｒｒｅｃｔ horse 12', CHEAP)
    expect(await verifyPassword('correct horse 12', h)).toBe(true)
  })
})

describe('password policy', () => {
  it('wants at least 10 characters, not one repeated, not the username', () => {
    expect(passwordProblem('short1234')).toBe('at least 10 characters')
    expect(passwordProblem('密码密码密码密码密码')).toBe('at least 4 different characters')
    expect(passwordProblem('aaaaaaaaaaaa')).toBe('at least 4 different characters')
    expect(passwordProblem('li.gong-2026!', 'li.gong')).toBe('must not contain the username')
    expect(passwordProblem('x'.repeat(257))).toBe('at most 256 characters')
    expect(passwordProblem('correct horse battery', 'li.gong')).toBeUndefined()
    expect(passwordProblem('停车场数据同步口令9')).toBeUndefined()
  })
})
