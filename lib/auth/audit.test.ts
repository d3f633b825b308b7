import { describe, expect, it } from 'vitest'
import { redact } from './audit.ts'
import { issueCredential } from './tokens.ts'

describe('audit redaction', () => {
  it('empties secret-looking keys, keeps the rest', () => {
    const out = redact({
      username: 'li.gong',
      password: 'correct horse battery',
      newPassword: 'x',
      passwordChangedAt: '2026-11-21T00:00:00.000Z',
      config: { baseUrl: 'http://vendor/', appKey: 'k', nested: [{ apiKey: 'a', clientSecret: 's' }] },
      totp: '123456',
      code: '654321',
      tokenId: '9f2c4e1a7b3d5c60',
      totpEnabled: true,
      plateNo: '粤C12345',
    })
    expect(out).toEqual({
      username: 'li.gong',
      password: '******',
      newPassword: '******',
      passwordChangedAt: '2026-11-21T00:00:00.000Z',
      config: { baseUrl: 'http://vendor/', appKey: '******', nested: [{ apiKey: '******', clientSecret: '******' }] },
      totp: '******',
      code: '******',
      tokenId: '9f2c4e1a7b3d5c60',
      totpEnabled: true,
      plateNo: '******',
    })
  })

  it('masks credentials and clear plates inside free text', () => {
    const token = issueCredential('api').token
    const out = redact({ note: `车辆 粤C12345 和 京A·D1234 已离场; used ${token}`, title: '横琴口岸停车场平台 P001' }) as Record<string, string>
    expect(out.note).toBe('车辆 粤C·***45 和 京A·***34 已离场; used cst_******')
    expect(out.title).toBe('横琴口岸停车场平台 P001')
  })
})
