import { describe, expect, it } from 'vitest'
import { hashCredential, issueCredential, parseCredential, sameHash, sameSecret } from './tokens.ts'

describe('bearer credentials', () => {
  it('are cst_<id>_<secret> (API) or css_<id>_<secret> (session), stored only as SHA-256', () => {
    const api = issueCredential('api')
    expect(api.token).toMatch(/^cst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
    expect(api.token.startsWith(`cst_${api.id}_`)).toBe(true)
    expect(api.hash).toBe(hashCredential(api.token))
    expect(api.hash).toMatch(/^[0-9a-f]{64}$/)
    // The whole secret (it may itself hold '_'), not a fragment that could be empty.
    expect(api.hash).not.toContain(api.token.slice(`cst_${api.id}_`.length))
    const session = issueCredential('session')
    expect(session.token).toMatch(/^css_[0-9a-f]{16}_/)
    expect(new Set(Array.from({ length: 50 }, () => issueCredential('api').token)).size).toBe(50)
  })

  it('parse back to kind, id and hash; anything else is not ours', () => {
    const c = issueCredential('api')
    expect(parseCredential(c.token)).toEqual({ kind: 'api', id: c.id, hash: c.hash })
    expect(parseCredential(` ${c.token} `)).toEqual({ kind: 'api', id: c.id, hash: c.hash })
    const s = issueCredential('session')
    expect(parseCredential(s.token)).toMatchObject({ kind: 'session', id: s.id })
    expect(parseCredential('cst_xyz_abc')).toBeUndefined()
    expect(parseCredential(c.token + 'x')).toBeUndefined()
    expect(parseCredential('a-bootstrap-token-of-at-least-24-chars')).toBeUndefined()
  })

  it('compare in constant time, whatever the lengths', () => {
    const c = issueCredential('api')
    expect(sameHash(c.hash, hashCredential(c.token))).toBe(true)
    expect(sameHash(c.hash, hashCredential(c.token.slice(0, -1) + 'A'))).toBe(c.token.endsWith('A'))
    expect(sameHash(c.hash, '')).toBe(false)
    expect(sameSecret('bootstrap-token-of-24-chars!', 'bootstrap-token-of-24-chars!')).toBe(true)
    expect(sameSecret('bootstrap-token-of-24-chars', 'bootstrap-token-of-24-chars!')).toBe(false)
  })
})
