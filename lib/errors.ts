// Coded errors, one table per area. A code is never reused once retired.
// The HTTP status is what the API answers when the error reaches a route.

const ERRORS = {
  CITYSYNC_ERR_CONFIG_INVALID: { status: 400, message: 'invalid configuration: %s' },
  CITYSYNC_ERR_CONFIG_MISSING: { status: 400, message: 'missing configuration: %s' },

  CITYSYNC_ERR_SOURCE_NOT_FOUND: { status: 404, message: 'source %s not found' },
  CITYSYNC_ERR_SOURCE_EXISTS: { status: 409, message: 'source %s already exists' },
  CITYSYNC_ERR_SOURCE_KIND_UNKNOWN: { status: 400, message: 'unknown source kind %s' },
  CITYSYNC_ERR_SOURCE_STATE: { status: 409, message: 'source %s cannot do that now: %s' },
  CITYSYNC_ERR_SOURCE_NOT_PAUSED: { status: 409, message: 'source %s must be paused first: %s' },
  CITYSYNC_ERR_SOURCE_CHECK_FAILED: { status: 422, message: 'source %s failed its check: %s' },
  CITYSYNC_ERR_SOURCE_CURSOR_INVALID: { status: 400, message: 'cursor for source %s is invalid: %s' },

  // Push ingest (POST /api/v1/ingest/:sourceId). 401s never say which part of the signature was wrong.
  CITYSYNC_ERR_INGEST_NOT_PUSH: { status: 409, message: 'source %s is of kind %s, which does not accept pushes' },
  CITYSYNC_ERR_INGEST_PAUSED: { status: 503, message: 'source %s is paused: pushes are refused until it is deployed; send the batch again later' },
  CITYSYNC_ERR_INGEST_TIMESTAMP: { status: 401, message: 'push refused: %s' },
  CITYSYNC_ERR_INGEST_SIGNATURE: { status: 401, message: 'push refused: %s' },
  CITYSYNC_ERR_INGEST_BODY: { status: 400, message: 'push body unusable: %s' },
  CITYSYNC_ERR_INGEST_TOO_LARGE: { status: 413, message: 'push too large: %s' },
  CITYSYNC_ERR_INGEST_UNAVAILABLE: { status: 503, message: 'push ingest is not available in this process: %s' },
  CITYSYNC_ERR_INGEST_UNACKED: { status: 503, message: 'the pipeline did not acknowledge the batch within %s ms; send it again (items are deduplicated)' },

  CITYSYNC_ERR_CONNECTOR_HTTP: { status: 502, message: 'upstream answered %s' },
  CITYSYNC_ERR_CONNECTOR_TIMEOUT: { status: 504, message: 'upstream did not answer within %s ms' },
  CITYSYNC_ERR_CONNECTOR_PAYLOAD: { status: 502, message: 'upstream payload unusable: %s' },
  CITYSYNC_ERR_CONNECTOR_PARTIAL: { status: 502, message: '%s upstream feeds failed: %s' },
  CITYSYNC_ERR_CONNECTOR_DB: { status: 502, message: 'vendor database %s: %s' },

  CITYSYNC_ERR_SCHEMA_UNKNOWN: { status: 400, message: 'unknown schema %s' },
  CITYSYNC_ERR_SCHEMA_INVALID: { status: 400, message: 'record does not match schema %s at %s: %s' },
  CITYSYNC_ERR_SCHEMA_WIRE: { status: 400, message: 'not a citysync wire message: %s' },

  CITYSYNC_ERR_WAREHOUSE_QUERY: { status: 500, message: 'warehouse query failed: %s' },
  CITYSYNC_ERR_WAREHOUSE_UNAVAILABLE: { status: 503, message: 'warehouse unavailable: %s' },

  CITYSYNC_ERR_BUS_CLOSED: { status: 503, message: 'bus is closed' },
  CITYSYNC_ERR_BUS_UNAVAILABLE: { status: 503, message: 'Kafka unavailable: %s' },
  CITYSYNC_ERR_BUS_DELIVERY: { status: 503, message: 'Kafka did not accept %s message(s) on %s: %s' },

  CITYSYNC_ERR_API_VALIDATION: { status: 400, message: '%s' },
  CITYSYNC_ERR_API_NOT_FOUND: { status: 404, message: 'route %s not found' },
  CITYSYNC_ERR_API_BODY_INVALID: { status: 400, message: 'request body unusable: %s' },
  CITYSYNC_ERR_API_BODY_TOO_LARGE: { status: 413, message: 'request body is larger than the %s bytes this route accepts' },
  CITYSYNC_ERR_API_MEDIA_TYPE: { status: 415, message: 'unsupported content type %s; send application/json' },
  CITYSYNC_ERR_API_RATE_LIMITED: { status: 429, message: 'too many requests: the limit is %s; retry in %s' },
  CITYSYNC_ERR_API_CORS_ORIGIN: { status: 403, message: 'cross-origin requests from %s are not allowed' },

  CITYSYNC_ERR_SOURCE_VERSION_CONFLICT: { status: 409, message: 'source %s was changed meanwhile: expected version %s, found %s' },

  CITYSYNC_ERR_CRYPTO_DECRYPT: { status: 500, message: 'cannot decrypt: %s' },

  // Personal data: revealing a protected plate (POST /api/v1/plates/reveal).
  CITYSYNC_ERR_PLATE_NOT_FOUND: { status: 404, message: 'no parking passage %s with a plate' },
  CITYSYNC_ERR_PLATE_UNAVAILABLE: { status: 503, message: 'plates cannot be revealed by this process: %s' },

  CITYSYNC_ERR_METADATA_UNAVAILABLE: { status: 503, message: 'metadata store unavailable: %s' },

  CITYSYNC_ERR_COUNTY_FILE: { status: 400, message: 'county file %s refused: %s' },
  CITYSYNC_ERR_COUNTY_FILE_TOO_LARGE: { status: 413, message: 'county file is larger than %s bytes' },
  CITYSYNC_ERR_COUNTY_FILE_DUPLICATE: { status: 409, message: 'county file %s has the same content as %s, already landed' },

  CITYSYNC_ERR_ONBOARDING_NOT_FOUND: { status: 404, message: 'car park %s has no onboarding record' },
  CITYSYNC_ERR_ONBOARDING_TRANSITION: { status: 409, message: 'car park %s cannot move from %s to %s' },
  CITYSYNC_ERR_ONBOARDING_CONFLICT: { status: 409, message: 'car park %s was changed meanwhile: expected version %s, found %s' },

  // Sync health: alerts, silences, incidents, notification channels.
  CITYSYNC_ERR_ALERT_NOT_FOUND: { status: 404, message: 'alert %s not found' },
  CITYSYNC_ERR_SILENCE_NOT_FOUND: { status: 404, message: 'silence %s not found' },
  CITYSYNC_ERR_INCIDENT_NOT_FOUND: { status: 404, message: 'incident %s not found' },
  CITYSYNC_ERR_INCIDENT_CONFLICT: { status: 409, message: 'incident %s was changed meanwhile: expected version %s, found %s' },
  CITYSYNC_ERR_INCIDENT_STATE: { status: 409, message: 'incident %s cannot do that now: %s' },
  CITYSYNC_ERR_INCIDENT_ROOT_CAUSE: { status: 422, message: 'incident %s needs a root cause before it can be closed' },
  CITYSYNC_ERR_CHANNEL_DELIVERY: { status: 502, message: 'channel %s did not accept the notification: %s' },
  CITYSYNC_ERR_QUALITY_UNAVAILABLE: { status: 503, message: 'freshness unavailable: %s' },

  // Reports: the monthly sync report and the quarterly onboarding list.
  CITYSYNC_ERR_REPORT_PERIOD: { status: 400, message: 'report period %s: %s' },
  CITYSYNC_ERR_REPORT_OPTION: { status: 400, message: 'report option %s: %s' },
  CITYSYNC_ERR_REPORT_PDF_UNAVAILABLE: { status: 503, message: 'PDF output needs Chromium, which is not installed here (%s); install the Debian package: apt-get install chromium' },
  CITYSYNC_ERR_REPORT_PDF_FAILED: { status: 500, message: 'Chromium could not render the PDF: %s' },

  // Analytics: figures (GET /api/v1/analytics/*) and analyst SQL (POST /api/v1/analytics/sql).
  CITYSYNC_ERR_ANALYTICS_QUERY: { status: 400, message: 'analytics query refused: %s' },
  CITYSYNC_ERR_ANALYTICS_TOO_LARGE: { status: 400, message: 'the answer would have %s; ask for %s' },
  CITYSYNC_ERR_ANALYTICS_SQL_DISABLED: { status: 404, message: 'analyst SQL is not enabled in this process (set %s)' },
  CITYSYNC_ERR_ANALYTICS_SQL_REFUSED: { status: 400, message: 'analyst SQL refused: %s' },
  CITYSYNC_ERR_ANALYTICS_SQL_FAILED: { status: 400, message: 'analyst SQL failed: %s' },
  CITYSYNC_ERR_ANALYTICS_SQL_LIMIT: { status: 422, message: 'analyst SQL stopped at a limit: %s' },

  // Backups and restores (`citysync backup`, `citysync restore`).
  CITYSYNC_ERR_BACKUP_FAILED: { status: 500, message: 'backup failed: %s' },
  CITYSYNC_ERR_BACKUP_BUSY: { status: 409, message: '%s is open in another process (a running `citysync start`?): %s' },
  CITYSYNC_ERR_BACKUP_INVALID: { status: 422, message: 'backup %s is unusable: %s' },
  CITYSYNC_ERR_BACKUP_CORRUPT: { status: 422, message: 'backup %s does not match its manifest: %s' },
  CITYSYNC_ERR_RESTORE_NOT_EMPTY: { status: 409, message: 'restore needs an empty target: %s' },
  CITYSYNC_ERR_RESTORE_KEY_MISSING: { status: 400, message: 'backup %s was made with master key %s, which is not in the backup: set CITYSYNC_MASTER_KEY or pass --key-file' },
  CITYSYNC_ERR_RESTORE_KEY_MISMATCH: { status: 409, message: 'backup %s was made with master key %s, but the key given is %s: plates and secrets in it could not be read' },
  CITYSYNC_ERR_RESTORE_INCOMPATIBLE: { status: 409, message: 'backup %s cannot be restored by this version: %s' },
  CITYSYNC_ERR_RESTORE_VERIFY: { status: 500, message: 'restored %s does not match the manifest: %s' },

  // Users and access (api/auth.ts, lib/auth/). 401s never say whether the username or the password was wrong.
  CITYSYNC_ERR_AUTH_REQUIRED: { status: 401, message: 'authentication required: %s' },
  CITYSYNC_ERR_AUTH_FORBIDDEN: { status: 403, message: '%s (role %s) lacks permission %s' },
  CITYSYNC_ERR_AUTH_INVALID: { status: 401, message: 'wrong username, password or one-time code' },
  CITYSYNC_ERR_AUTH_TOTP_REQUIRED: { status: 401, message: 'the one-time code from the authenticator app is required' },
  CITYSYNC_ERR_AUTH_LOCKED: { status: 423, message: 'account %s is locked until %s' },
  CITYSYNC_ERR_AUTH_PASSWORD_POLICY: { status: 400, message: 'password refused: %s' },
  CITYSYNC_ERR_AUTH_TOTP: { status: 400, message: 'one-time code setup: %s' },
  CITYSYNC_ERR_AUTH_NOT_USER: { status: 409, message: 'only a signed-in user can %s; this request is authenticated as %s' },
  CITYSYNC_ERR_AUTH_ROUTE_UNDECLARED: { status: 500, message: 'route %s has no entry in api/route-permissions.ts' },
  CITYSYNC_ERR_USER_NOT_FOUND: { status: 404, message: 'user %s not found' },
  CITYSYNC_ERR_USER_EXISTS: { status: 409, message: 'user %s already exists' },
  CITYSYNC_ERR_USER_INVALID: { status: 400, message: 'user %s: %s' },
  CITYSYNC_ERR_USER_LAST_ADMIN: { status: 409, message: 'cannot %s %s: it is the last enabled admin' },
  CITYSYNC_ERR_TOKEN_NOT_FOUND: { status: 404, message: 'API token %s not found' },
  CITYSYNC_ERR_TOKEN_INVALID: { status: 400, message: 'API token refused: %s' },
  CITYSYNC_ERR_AUDIT_WRITE: { status: 503, message: 'audit log could not be written: %s' },
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
