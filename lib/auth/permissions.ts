// Roles and what each may do. The matrix is the contract the API enforces
// (api/route-permissions.ts names the permission of every route) and the one
// docs/security.md documents: viewer < analyst, operator < admin.

export const ROLES = ['viewer', 'analyst', 'operator', 'admin'] as const
export type Role = (typeof ROLES)[number]

export const PERMISSIONS = [
  'sources:read',
  'sources:write',
  'sources:admin',
  'health:read',
  'alerts:write',
  'incidents:write',
  'county:write',
  'reports:read',
  'analytics:read',
  'analytics:sql',
  'users:admin',
  'audit:read',
  'plates:reveal',
] as const
export type Permission = (typeof PERMISSIONS)[number]

const VIEWER: readonly Permission[] = ['sources:read', 'health:read', 'reports:read']

export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  viewer: VIEWER,
  analyst: [...VIEWER, 'analytics:read', 'analytics:sql'],
  operator: [...VIEWER, 'analytics:read', 'sources:write', 'alerts:write', 'incidents:write', 'county:write'],
  admin: PERMISSIONS,
}

/** Admins and operators change what runs; the account review lists them apart. */
export const PRIVILEGED_ROLES: readonly Role[] = ['admin', 'operator']

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value)
}

export function isPermission(value: unknown): value is Permission {
  return typeof value === 'string' && (PERMISSIONS as readonly string[]).includes(value)
}

export function can(role: Role, permission: Permission): boolean {
  return ROLE_PERMISSIONS[role].includes(permission)
}

/**
 * An API token may be narrowed to scopes: it then holds a permission only when
 * both its role and its scopes grant it. No scopes: everything the role has.
 */
export function tokenCan(role: Role, scopes: readonly Permission[] | null, permission: Permission): boolean {
  return can(role, permission) && (scopes === null || scopes.includes(permission))
}

/** The permissions of `scopes` that `role` lacks (a token's scopes must be a subset of its role's). */
export function scopesBeyondRole(role: Role, scopes: readonly string[]): string[] {
  return scopes.filter((s) => !isPermission(s) || !can(role, s))
}
