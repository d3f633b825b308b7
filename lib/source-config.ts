import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { extname } from 'node:path'
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js'
import { CronPattern } from 'croner'
import { parse as parseYaml } from 'yaml'
import { type JsonSchema } from '../connectors/sdk/connector.ts'
import { isDepartures, isOpeningHours } from '../quality/calendar.ts'
import { calendarProblems, FRESHNESS_PROPERTIES } from '../quality/freshness-config.ts'
import { sm4Decrypt, sm4Encrypt } from './crypto.ts'
import { isDuration, parseDuration } from './duration.ts'
import { CitysyncError } from './errors.ts'

export type Schedule = { every: string } | { cron: string }

export interface Freshness {
  /** Duration text ('2h'); parse with parseDuration. */
  maxDelay: string
  /** Expected-activity calendar; format in quality/calendar.ts and quality/README.md. */
  calendar?: Record<string, unknown>
  /** Alert hysteresis and thresholds (durations); see quality/freshness-config.ts. */
  openAfter?: string
  closeAfter?: string
  stoppedAfter?: string
  skewTolerance?: string
  /** Car parks follow their own opening hours from parking_lot (default true). */
  lotHours?: boolean
  /** Per entity (car park, station, terminal id): maxDelay, calendar, ignore. */
  entities?: Record<string, { maxDelay?: string; calendar?: Record<string, unknown>; ignore?: boolean }>
}

/** A source definition after validation, defaults applied. */
export interface SourceConfig {
  id: string
  kind: string
  name: string
  operator: string | null
  district: string | null
  /** IANA zone in which the source writes naive local times. */
  timezone: string
  schedule: Schedule
  freshness: Freshness
  /** Connector-specific, validated against the connector's configSchema. */
  config: Record<string, unknown>
}

export type ConnectorSchemaLookup = (kind: string) => JsonSchema | undefined

export const DEFAULT_TIMEZONE = 'Asia/Shanghai'
export const DEFAULT_SCHEDULE: Schedule = { every: '1m' }
export const DEFAULT_MAX_DELAY = '2h'
const MIN_EVERY_MS = 1_000

// Formats a connector schema may use besides the standard ones below.
// 'citysync-duration' is our '30s' / '1h30m' grammar, not ISO 8601.
const FORMATS = {
  uri: isUri,
  'date-time': (s: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$/i.test(s) && !Number.isNaN(Date.parse(s)),
  date: (s: string) => /^\d{4}-\d\d-\d\d$/.test(s) && !Number.isNaN(Date.parse(s)),
  email: (s: string) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(s),
  hostname: (s: string) => s.length <= 253 && /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$/.test(s),
  ipv4: (s: string) => isIP(s) === 4,
  ipv6: (s: string) => isIP(s) === 6,
  uuid: (s: string) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s),
  'citysync-duration': (s: string) => isDuration(s),
  cron: isCron,
  timezone: isTimeZone,
  'citysync-hours': isOpeningHours,
  'citysync-departures': isDepartures,
} satisfies Record<string, (s: string) => boolean>

const FORMAT_HINTS: Record<string, string> = {
  'citysync-duration': 'must be a duration such as 30s, 5m, 1h30m or 2h',
  cron: 'must be a cron expression such as */5 * * * *',
  timezone: 'must be an IANA time zone such as Asia/Shanghai',
  'citysync-hours': 'must be opening hours such as 24/7 or Mo-Fr 07:00-22:00; Sa,Su 09:00-18:00',
  'citysync-departures': 'must be departures such as Mo-Su 07:30,09:00,21:30 or sailings',
}

const ajv = new Ajv2020({ allErrors: true, useDefaults: true, allowUnionTypes: true, formats: FORMATS })
ajv.addKeyword({ keyword: 'x-secret', schemaType: 'boolean' })

const ENVELOPE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'kind', 'name'],
  properties: {
    id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{1,62}$' },
    kind: { type: 'string', minLength: 1 },
    name: { type: 'string', minLength: 1 },
    operator: { type: ['string', 'null'] },
    district: { type: ['string', 'null'] },
    timezone: { type: 'string', format: 'timezone', default: DEFAULT_TIMEZONE },
    schedule: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      maxProperties: 1,
      properties: {
        every: { type: 'string', format: 'citysync-duration' },
        cron: { type: 'string', format: 'cron' },
      },
      default: DEFAULT_SCHEDULE,
    },
    freshness: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxDelay: { type: 'string', format: 'citysync-duration', default: DEFAULT_MAX_DELAY },
        ...FRESHNESS_PROPERTIES,
      },
      default: {},
    },
    config: { type: 'object', default: {} },
  },
} as const

const validateEnvelope = ajv.compile(ENVELOPE_SCHEMA)

/**
 * The one gate for source definitions (CLI file, REST body): returns a typed
 * SourceConfig with defaults applied, or throws CITYSYNC_ERR_CONFIG_INVALID
 * naming every failing path ("config.baseUrl: must match format \"uri\"").
 * The input is not modified.
 */
export function validateSourceConfig(raw: unknown, connectorSchemaLookup: ConnectorSchemaLookup): SourceConfig {
  if (!isPlainObject(raw)) throw invalid(['(root): must be an object'])
  const candidate = structuredClone(raw)
  if (!validateEnvelope(candidate)) throw invalid(describeErrors(validateEnvelope.errors ?? [], ''))
  const schedule = candidate.schedule as Schedule
  const freshness = candidate.freshness as Freshness
  const tooShort: string[] = []
  if ('every' in schedule && parseDuration(schedule.every) < MIN_EVERY_MS) tooShort.push('schedule.every: must be at least 1s')
  if (parseDuration(freshness.maxDelay) === 0) tooShort.push('freshness.maxDelay: must be more than 0')
  tooShort.push(...calendarProblems(freshness, candidate.timezone as string))
  if (tooShort.length > 0) throw invalid(tooShort)

  const schema = connectorSchemaLookup(candidate.kind as string)
  if (schema === undefined) throw new CitysyncError('CITYSYNC_ERR_SOURCE_KIND_UNKNOWN', [candidate.kind as string])
  const validateConfig = compileConnectorSchema(schema)
  if (!validateConfig(candidate.config)) throw invalid(describeErrors(validateConfig.errors ?? [], 'config'))

  return {
    id: candidate.id as string,
    kind: candidate.kind as string,
    name: candidate.name as string,
    operator: (candidate.operator as string | null | undefined) ?? null,
    district: (candidate.district as string | null | undefined) ?? null,
    timezone: candidate.timezone as string,
    schedule,
    freshness,
    config: candidate.config as Record<string, unknown>,
  }
}

/** Compiles (once; ajv caches by schema object) a connector's configSchema. */
export function compileConnectorSchema(schema: JsonSchema): ValidateFunction {
  return ajv.compile(schema)
}

/** Raw content of a .yaml, .yml or .json source file; validate it with validateSourceConfig. */
export function parseSourceFile(path: string): unknown {
  const ext = extname(path).toLowerCase()
  if (ext !== '.yaml' && ext !== '.yml' && ext !== '.json') {
    throw invalid([`${path}: expected a .yaml, .yml or .json file`])
  }
  const text = readFileSync(path, 'utf8')
  try {
    // YAML 1.2 is a superset of JSON, so one parser serves both; duplicate keys are errors.
    return parseYaml(text, { uniqueKeys: true, prettyErrors: true }) as unknown
  } catch (err) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${path}: ${(err as Error).message}`], { cause: err })
  }
}

export function loadSourceFile(path: string, connectorSchemaLookup: ConnectorSchemaLookup): SourceConfig {
  const raw = parseSourceFile(path)
  try {
    return validateSourceConfig(raw, connectorSchemaLookup)
  } catch (err) {
    if (err instanceof CitysyncError && err.code === 'CITYSYNC_ERR_CONFIG_INVALID') {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${path}: ${err.message.replace(/^invalid configuration: /, '')}`], { cause: err })
    }
    throw err
  }
}

// Secrets at rest. Contract: a property whose schema says "x-secret": true is
// stored as { "$sealed": "<sm4Encrypt hex of JSON.stringify(value)>" }.

export interface SealedValue {
  $sealed: string
}

export function isSealed(value: unknown): value is SealedValue {
  if (!isPlainObject(value)) return false
  const keys = Object.keys(value)
  return keys.length === 1 && keys[0] === '$sealed' && typeof value.$sealed === 'string'
}

/** A copy of `config` with every x-secret value sealed (already sealed values are kept). */
export function sealSecrets(config: Record<string, unknown>, schema: JsonSchema, encKey: Buffer): Record<string, unknown> {
  return mapSecrets(config, schema, schema, (value) =>
    isSealed(value) ? value : { $sealed: sm4Encrypt(encKey, JSON.stringify(value)) },
  ) as Record<string, unknown>
}

/**
 * A copy of `config` with every sealed value opened. Needs no schema: sealed
 * values mark themselves, and forging one needs the key.
 */
export function openSecrets(config: Record<string, unknown>, encKey: Buffer): Record<string, unknown> {
  return openDeep(config, encKey) as Record<string, unknown>
}

export const REDACTED = '******'

/** A copy of `config` fit to show: every x-secret value (sealed or not) becomes '******'. */
export function redactSecrets(config: Record<string, unknown>, schema: JsonSchema): Record<string, unknown> {
  return mapSecrets(config, schema, schema, () => REDACTED) as Record<string, unknown>
}

/** Seals on the way into the metadata store and opens on the way out. */
export interface SecretCodec {
  seal(source: SourceConfig): SourceConfig
  open(source: SourceConfig): SourceConfig
}

export function createSecretCodec(connectorSchemaLookup: ConnectorSchemaLookup, encKey: Buffer): SecretCodec {
  return {
    seal(source) {
      const schema = connectorSchemaLookup(source.kind)
      // Without the schema we cannot know what is secret: refuse rather than store it in clear.
      if (schema === undefined) throw new CitysyncError('CITYSYNC_ERR_SOURCE_KIND_UNKNOWN', [source.kind])
      return { ...source, config: sealSecrets(source.config, schema, encKey) }
    },
    open(source) {
      return { ...source, config: openSecrets(source.config, encKey) }
    },
  }
}

function openDeep(value: unknown, encKey: Buffer): unknown {
  if (isSealed(value)) return JSON.parse(sm4Decrypt(encKey, value.$sealed)) as unknown
  if (Array.isArray(value)) return value.map((item) => openDeep(item, encKey))
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) out[key] = openDeep(item, encKey)
    return out
  }
  return value
}

// Walks value and schema together (properties, additionalProperties,
// patternProperties, items, prefixItems, allOf/anyOf/oneOf, local $ref) and
// replaces every present value whose schema is marked x-secret.
function mapSecrets(value: unknown, schema: unknown, root: JsonSchema, replace: (value: unknown) => unknown, depth = 0): unknown {
  if (!isPlainObject(schema) || depth > 64) return value
  const resolved = typeof schema.$ref === 'string' ? (resolveLocalRef(root, schema.$ref) ?? schema) : schema
  if (value === undefined || value === null) return value
  if (resolved['x-secret'] === true) return replace(value)

  let out: unknown = value
  for (const keyword of ['allOf', 'anyOf', 'oneOf'] as const) {
    const subs = resolved[keyword]
    if (Array.isArray(subs)) for (const sub of subs) out = mapSecrets(out, sub, root, replace, depth + 1)
  }

  if (isPlainObject(out)) {
    const properties = isPlainObject(resolved.properties) ? resolved.properties : {}
    const patterns = isPlainObject(resolved.patternProperties) ? Object.entries(resolved.patternProperties) : []
    const additional = isPlainObject(resolved.additionalProperties) ? resolved.additionalProperties : undefined
    const copy: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(out)) {
      let sub: unknown = Object.hasOwn(properties, key) ? properties[key] : undefined
      if (sub === undefined) sub = patterns.find(([pattern]) => new RegExp(pattern, 'u').test(key))?.[1]
      if (sub === undefined) sub = additional
      copy[key] = sub === undefined ? item : mapSecrets(item, sub, root, replace, depth + 1)
    }
    return copy
  }
  if (Array.isArray(out)) {
    const prefix: unknown[] = Array.isArray(resolved.prefixItems) ? resolved.prefixItems : []
    const items = resolved.items
    return (out as unknown[]).map((item, i) => {
      const sub = i < prefix.length ? prefix[i] : items
      return sub === undefined ? item : mapSecrets(item, sub, root, replace, depth + 1)
    })
  }
  return out
}

function resolveLocalRef(root: JsonSchema, ref: string): Record<string, unknown> | undefined {
  if (!ref.startsWith('#')) return undefined
  let node: unknown = root
  for (const raw of ref.slice(1).split('/').slice(1)) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~')
    if (!isPlainObject(node)) return undefined
    node = node[key]
  }
  return isPlainObject(node) ? node : undefined
}

function describeErrors(errors: readonly ErrorObject[], prefix: string): string[] {
  const seen = new Set<string>()
  for (const error of errors) {
    let path = joinPath(prefix, pointerToPath(error.instancePath))
    let message = error.message ?? 'is invalid'
    const params = error.params as Record<string, unknown>
    if (error.keyword === 'required') {
      path = joinPath(path, String(params.missingProperty))
      message = 'is required'
    } else if (error.keyword === 'additionalProperties') {
      path = joinPath(path, String(params.additionalProperty))
      message = 'is not an allowed property'
    } else if (error.keyword === 'format' && FORMAT_HINTS[String(params.format)] !== undefined) {
      message = FORMAT_HINTS[String(params.format)] as string
    } else if (error.keyword === 'enum' && Array.isArray(params.allowedValues)) {
      message = `must be one of ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`
    } else if ((error.keyword === 'minProperties' || error.keyword === 'maxProperties') && path === 'schedule') {
      message = 'must have exactly one of every, cron'
    }
    seen.add(`${path === '' ? '(root)' : path}: ${message}`)
  }
  return [...seen]
}

function pointerToPath(pointer: string): string {
  if (pointer === '') return ''
  return pointer
    .slice(1)
    .split('/')
    .map((raw) => raw.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((path, segment) => (/^\d+$/.test(segment) ? `${path}[${segment}]` : joinPath(path, segment)), '')
}

function joinPath(path: string, segment: string): string {
  if (segment === '') return path
  return path === '' ? segment : `${path}.${segment}`
}

function invalid(problems: readonly string[]): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [problems.join('; ')])
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isUri(text: string): boolean {
  // An absolute URI: a scheme, then something. new URL also accepts 'mailto:x' and 'urn:x'.
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(text)) return false
  try {
    new URL(text)
    return true
  } catch {
    return false
  }
}

function isCron(text: string): boolean {
  try {
    new CronPattern(text)
    return true
  } catch {
    return false
  }
}

function isTimeZone(text: string): boolean {
  // Intl also takes offsets such as '+08:00' in some versions; only names are wanted.
  if (!/^[A-Za-z]/.test(text)) return false
  try {
    new Intl.DateTimeFormat('en', { timeZone: text })
    return true
  } catch {
    return false
  }
}
