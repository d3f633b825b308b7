// Coded errors, one table per area. A code is never reused once retired.
// The HTTP status is what the API answers when the error reaches a route.

const ERRORS = {
  CITYSYNC_ERR_CONFIG_INVALID: { status: 400, message: 'invalid configuration: %s' },
  CITYSYNC_ERR_CONFIG_MISSING: { status: 400, message: 'missing configuration: %s' },

  CITYSYNC_ERR_SOURCE_NOT_FOUND: { status: 404, message: 'source %s not found' },
  CITYSYNC_ERR_SOURCE_EXISTS: { status: 409, message: 'source %s already exists' },
  CITYSYNC_ERR_SOURCE_KIND_UNKNOWN: { status: 400, message: 'unknown source kind %s' },
  CITYSYNC_ERR_SOURCE_STATE: { status: 409, message: 'source %s cannot do that now: %s' },

  CITYSYNC_ERR_CONNECTOR_HTTP: { status: 502, message: 'upstream answered %s' },
  CITYSYNC_ERR_CONNECTOR_TIMEOUT: { status: 504, message: 'upstream did not answer within %s ms' },
  CITYSYNC_ERR_CONNECTOR_PAYLOAD: { status: 502, message: 'upstream payload unusable: %s' },

  CITYSYNC_ERR_SCHEMA_UNKNOWN: { status: 400, message: 'unknown schema %s' },
  CITYSYNC_ERR_SCHEMA_INVALID: { status: 400, message: 'record does not match schema %s at %s: %s' },
  CITYSYNC_ERR_SCHEMA_WIRE: { status: 400, message: 'not a citysync wire message: %s' },

  CITYSYNC_ERR_WAREHOUSE_QUERY: { status: 500, message: 'warehouse query failed: %s' },
  CITYSYNC_ERR_WAREHOUSE_UNAVAILABLE: { status: 503, message: 'warehouse unavailable: %s' },

  CITYSYNC_ERR_BUS_CLOSED: { status: 503, message: 'bus is closed' },

  CITYSYNC_ERR_API_VALIDATION: { status: 400, message: '%s' },
  CITYSYNC_ERR_API_NOT_FOUND: { status: 404, message: 'route %s not found' },

  CITYSYNC_ERR_SOURCE_VERSION_CONFLICT: { status: 409, message: 'source %s was changed meanwhile: expected version %s, found %s' },

  CITYSYNC_ERR_CRYPTO_DECRYPT: { status: 500, message: 'cannot decrypt: %s' },

  CITYSYNC_ERR_METADATA_UNAVAILABLE: { status: 503, message: 'metadata store unavailable: %s' },
} as const

export type ErrorCode = keyof typeof ERRORS

export class CitysyncError extends Error {
  readonly code: ErrorCode
  readonly status: number

  constructor(code: ErrorCode, args: readonly (string | number)[] = [], options?: { cause?: unknown }) {
    let i = 0
    const message = ERRORS[code].message.replace(/%s/g, () => String(args[i++] ?? ''))
    super(message, options)
    this.name = 'CitysyncError'
    this.code = code
    this.status = ERRORS[code].status
  }
}

export function isCitysyncError(err: unknown, code?: ErrorCode): err is CitysyncError {
  return err instanceof CitysyncError && (code === undefined || err.code === code)
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}
