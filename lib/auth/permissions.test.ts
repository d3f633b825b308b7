import { describe, expect, it } from 'vitest'
import { can, PERMISSIONS, ROLES, scopesBeyondRole, tokenCan } from './permissions.ts'

// The matrix of the shared contract, written out: a change to permissions.ts
// that is not also made here fails.
const EXPECTED: Record<(typeof ROLES)[number], string[]> = {
  viewer: ['sources:read', 'health:read', 'reports:read'],
  analyst: ['sources:read', 'health:read', 'reports:read', 'analytics:read', 'analytics:sql'],
  operator: ['sources:read', 'health:read', 'reports:read', 'analytics:read', 'sources:write', 'alerts:write', 'incidents:write', 'county:write'],
  admin: [
    'sources:read', 'sources:write', 'sources:admin', 'health:read', 'alerts:write', 'incidents:write', 'county:write',
    'reports:read', 'analytics:read', 'analytics:sql', 'users:admin', 'audit:read', 'plates:reveal',
  ],
}

describe('roles and permissions', () => {
  it('grant exactly the contract matrix', () => {
    for (const role of ROLES) {
      for (const p of PERMISSIONS) expect(can(role, p), `${role} ${p}`).toBe(EXPECTED[role].includes(p))
    }
    expect(PERMISSIONS).toHaveLength(13)
  })

  it('order viewer < analyst, operator < admin', () => {
    for (const p of PERMISSIONS) {
      if (can('viewer', p)) expect(can('analyst', p) && can('operator', p)).toBe(true)
      if (can('analyst', p) || can('operator', p)) expect(can('admin', p)).toBe(true)
    }
    expect(can('analyst', 'sources:write')).toBe(false)
    expect(can('operator', 'analytics:sql')).toBe(false)
  })

  it('narrow a token to its scopes, never beyond its role', () => {
    expect(tokenCan('operator', null, 'sources:write')).toBe(true)
    expect(tokenCan('operator', ['health:read'], 'sources:write')).toBe(false)
    expect(tokenCan('operator', ['health:read'], 'health:read')).toBe(true)
    expect(tokenCan('viewer', ['sources:write'], 'sources:write')).toBe(false)
    expect(scopesBeyondRole('viewer', ['health:read', 'sources:write', 'no:such'])).toEqual(['sources:write', 'no:such'])
    expect(scopesBeyondRole('admin', [...PERMISSIONS])).toEqual([])
  })
})
