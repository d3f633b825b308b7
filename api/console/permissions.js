// The permission matrix as lib/auth/permissions.ts declares it (a unit test
// keeps the two equal). The console uses it only to hide what a role cannot
// do; the API enforces it. When GET /auth/me sends the list itself, that wins.

const VIEWER = ['sources:read', 'health:read', 'reports:read']

export const ROLE_PERMISSIONS = {
  viewer: VIEWER,
  analyst: [...VIEWER, 'analytics:read', 'analytics:sql'],
  operator: [...VIEWER, 'analytics:read', 'sources:write', 'alerts:write', 'incidents:write', 'county:write'],
  admin: [
    'sources:read', 'sources:write', 'sources:admin', 'health:read', 'alerts:write', 'incidents:write', 'county:write',
    'reports:read', 'analytics:read', 'analytics:sql', 'users:admin', 'audit:read', 'plates:reveal',
  ],
}

/** Whether the signed-in principal (GET /auth/me) may do `permission`. */
export function allowed(me, permission) {
  if (me === null || me === undefined) return false
  const granted = Array.isArray(me.permissions) ? me.permissions : (ROLE_PERMISSIONS[me.role] ?? [])
  return granted.includes(permission)
}
