import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { type JsonSchema } from '../connectors/sdk/connector.ts'
import { deriveKeys, sm4Decrypt } from './crypto.ts'
import { isCitysyncError } from './errors.ts'
import {
  createSecretCodec,
  isSealed,
  loadSourceFile,
  openSecrets,
  parseSourceFile,
  redactSecrets,
  sealSecrets,
  validateSourceConfig,
  type ConnectorSchemaLookup,
} from './source-config.ts'

const PARKING_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['baseUrl', 'appKey'],
  properties: {
    baseUrl: { type: 'string', format: 'uri' },
    appKey: { type: 'string', 'x-secret': true },
    pageSize: { type: 'integer', minimum: 1, default: 100 },
    mode: { type: 'string', enum: ['poll', 'push'], default: 'poll' },
    timeout: { type: 'string', format: 'citysync-duration' },
    lots: {
      type: 'array',
      items: {
        type: 'object',
        properties: { id: { type: 'string' }, password: { type: 'string', 'x-secret': true } },
        required: ['id'],
      },
    },
    db: { $ref: '#/$defs/db' },
  },
  $defs: {
    db: {
      type: 'object',
      properties: { user: { type: 'string' }, credentials: { type: 'object', 'x-secret': true } },
    },
  },
}

const lookup: ConnectorSchemaLookup = (kind) => (kind === 'parking-lots' ? PARKING_SCHEMA : kind === 'bare' ? {} : undefined)

const minimal = {
  id: 'hengqin-parking',
  kind: 'parking-lots',
  name: 'Hengqin car parks',
  config: { baseUrl: 'https://parking.example.cn/api', appKey: 's3cret' },
}

function problem(raw: unknown, schemaLookup: ConnectorSchemaLookup = lookup): string {
  try {
    validateSourceConfig(raw, schemaLookup)
  } catch (err) {
    if (isCitysyncError(err, 'CITYSYNC_ERR_CONFIG_INVALID')) return err.message
    throw err
  }
  throw new Error('expected validation to fail')
}

describe('validateSourceConfig', () => {
  it('applies the defaults of the envelope and of the connector schema', () => {
    const cfg = validateSourceConfig(minimal, lookup)
    expect(cfg).toEqual({
      id: 'hengqin-parking',
      kind: 'parking-lots',
      name: 'Hengqin car parks',
      operator: null,
      district: null,
      timezone: 'Asia/Shanghai',
      schedule: { every: '1m' },
      freshness: { maxDelay: '2h' },
      config: { baseUrl: 'https://parking.example.cn/api', appKey: 's3cret', pageSize: 100, mode: 'poll' },
    })
  })

  it('does not modify its input', () => {
    const raw = structuredClone(minimal)
    validateSourceConfig(raw, lookup)
    expect(raw).toEqual(minimal)
  })

  it('keeps what was given', () => {
    const cfg = validateSourceConfig(
      {
        ...minimal,
        operator: 'Hengqin Parking Co.',
        district: '横琴',
        timezone: 'Asia/Macau',
        schedule: { cron: '*/5 * * * *' },
        freshness: { maxDelay: '30m', calendar: { openingHours: 'Mo-Su 07:00-22:00' } },
      },
      lookup,
    )
    expect(cfg.operator).toBe('Hengqin Parking Co.')
    expect(cfg.district).toBe('横琴')
    expect(cfg.timezone).toBe('Asia/Macau')
    expect(cfg.schedule).toEqual({ cron: '*/5 * * * *' })
    expect(cfg.freshness).toEqual({ maxDelay: '30m', calendar: { openingHours: 'Mo-Su 07:00-22:00' } })
  })

  it('names the failing path', () => {
    expect(problem({ ...minimal, config: { ...minimal.config, baseUrl: 'not a url' } })).toBe(
      'invalid configuration: config.baseUrl: must match format "uri"',
    )
    expect(problem({ ...minimal, config: { baseUrl: 'https://x.cn' } })).toContain('config.appKey: is required')
    expect(problem({ ...minimal, config: { ...minimal.config, lots: [{ id: 'a' }, { name: 'b' }] } })).toContain(
      'config.lots[1].id: is required',
    )
    expect(problem({ ...minimal, config: { ...minimal.config, mode: 'pull' } })).toContain(
      'config.mode: must be one of "poll", "push"',
    )
    expect(problem({ ...minimal, config: { ...minimal.config, timeout: 'soon' } })).toContain(
      'config.timeout: must be a duration',
    )
  })

  it('checks the envelope', () => {
    expect(problem({ ...minimal, id: 'Hengqin Parking' })).toContain('id: must match pattern')
    expect(problem({ ...minimal, id: 'a' })).toContain('id: must match pattern')
    expect(problem({ ...minimal, name: undefined })).toContain('name: is required')
    expect(problem({ ...minimal, timezone: 'Mars/Olympus' })).toContain('timezone: must be an IANA time zone')
    expect(problem({ ...minimal, timezone: '+08:00' })).toContain('timezone: must be an IANA time zone')
    expect(problem({ ...minimal, schedule: { every: 'often' } })).toContain('schedule.every: must be a duration')
    expect(problem({ ...minimal, schedule: { cron: '61 * * * *' } })).toContain('schedule.cron: must be a cron expression')
    expect(problem({ ...minimal, schedule: { every: '1m', cron: '* * * * *' } })).toContain(
      'schedule: must have exactly one of every, cron',
    )
    expect(problem({ ...minimal, freshness: { maxDelay: 7200 } })).toContain('freshness.maxDelay: must be string')
    expect(problem({ ...minimal, schedule: { every: '500ms' } })).toContain('schedule.every: must be at least 1s')
    expect(problem({ ...minimal, freshness: { maxDelay: '0s' } })).toContain('freshness.maxDelay: must be more than 0')
    expect(problem({ ...minimal, shedule: { every: '1m' } })).toContain('shedule: is not an allowed property')
    expect(problem([minimal])).toBe('invalid configuration: (root): must be an object')
  })

  it('reports every problem at once', () => {
    const message = problem({ ...minimal, id: 'X', timezone: 'Nowhere', config: { appKey: 1 } })
    expect(message).toContain('id: must match pattern')
    expect(message).toContain('timezone:')
    // The connector schema is checked once the envelope is valid.
    expect(message).not.toContain('config.')
  })

  it('refuses an unknown kind', () => {
    try {
      validateSourceConfig({ ...minimal, kind: 'teleporter' }, lookup)
      expect.unreachable()
    } catch (err) {
      expect(isCitysyncError(err, 'CITYSYNC_ERR_SOURCE_KIND_UNKNOWN')).toBe(true)
    }
  })

  it('defaults config to an empty object for connectors that need none', () => {
    expect(validateSourceConfig({ id: 'demo-1', kind: 'bare', name: 'Demo' }, lookup).config).toEqual({})
  })
})

describe('source files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'citysync-src-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('reads YAML and JSON alike', () => {
    const yamlPath = join(dir, 'a.yaml')
    writeFileSync(
      yamlPath,
      [
        'id: hengqin-parking',
        'kind: parking-lots',
        'name: Hengqin car parks',
        'schedule: { every: 30s }',
        'config:',
        '  baseUrl: https://parking.example.cn/api',
        '  appKey: s3cret',
      ].join('\n'),
    )
    const jsonPath = join(dir, 'a.json')
    writeFileSync(jsonPath, JSON.stringify({ ...minimal, schedule: { every: '30s' } }))
    expect(loadSourceFile(yamlPath, lookup)).toEqual(loadSourceFile(jsonPath, lookup))
    expect(parseSourceFile(yamlPath)).toMatchObject({ id: 'hengqin-parking', schedule: { every: '30s' } })
  })

  it('reports syntax errors, duplicate keys and wrong extensions with the file name', () => {
    const bad = join(dir, 'bad.yml')
    writeFileSync(bad, 'id: a\nid: b\n')
    expect(() => parseSourceFile(bad)).toThrow(/bad\.yml: .*(unique|duplicate)/i)
    const broken = join(dir, 'broken.json')
    writeFileSync(broken, '{"id": "x",')
    expect(() => parseSourceFile(broken)).toThrow(/broken\.json: /)
    expect(() => parseSourceFile(join(dir, 'a.toml'))).toThrow(/expected a \.yaml, \.yml or \.json file/)
  })

  it('prefixes validation errors with the file name', () => {
    const path = join(dir, 'invalid.yaml')
    writeFileSync(path, 'id: x-y\nkind: parking-lots\nname: X\nconfig: { baseUrl: nope, appKey: k }\n')
    expect(() => loadSourceFile(path, lookup)).toThrow(/invalid\.yaml: config\.baseUrl: must match format "uri"/)
  })
})

describe('secrets at rest', () => {
  const { encKey } = deriveKeys('a passphrase that is long enough')
  const config = {
    baseUrl: 'https://x.cn',
    appKey: 's3cret',
    lots: [{ id: 'a', password: 'pw-a' }, { id: 'b' }],
    db: { user: 'reader', credentials: { password: 'pw', token: 42 } },
  }

  it('seals every x-secret value, nested, in arrays and behind $ref', () => {
    const sealed = sealSecrets(config, PARKING_SCHEMA, encKey)
    expect(sealed.baseUrl).toBe('https://x.cn')
    expect(isSealed(sealed.appKey)).toBe(true)
    const lots = sealed.lots as Record<string, unknown>[]
    expect(isSealed(lots[0]?.password)).toBe(true)
    expect(lots[1]).toEqual({ id: 'b' })
    const db = sealed.db as Record<string, unknown>
    expect(db.user).toBe('reader')
    expect(isSealed(db.credentials)).toBe(true)
    expect(JSON.stringify(sealed)).not.toMatch(/s3cret|pw-a|"pw"/)
    expect(sm4Decrypt(encKey, (sealed.appKey as { $sealed: string }).$sealed)).toBe('"s3cret"')
    expect(config.appKey).toBe('s3cret')
  })

  it('opens what it sealed, and sealing twice changes nothing', () => {
    const sealed = sealSecrets(config, PARKING_SCHEMA, encKey)
    expect(sealSecrets(sealed, PARKING_SCHEMA, encKey)).toEqual(sealed)
    expect(openSecrets(sealed, encKey)).toEqual(config)
  })

  it('will not open with another key', () => {
    const sealed = sealSecrets(config, PARKING_SCHEMA, encKey)
    expect(() => openSecrets(sealed, deriveKeys('another passphrase, long enough').encKey)).toThrow(/cannot decrypt/)
  })

  it('redacts for display', () => {
    const redacted = redactSecrets(sealSecrets(config, PARKING_SCHEMA, encKey), PARKING_SCHEMA)
    expect(redacted).toEqual({
      baseUrl: 'https://x.cn',
      appKey: '******',
      lots: [{ id: 'a', password: '******' }, { id: 'b' }],
      db: { user: 'reader', credentials: '******' },
    })
  })

  it('codec seals by kind and refuses kinds it cannot see', () => {
    const codec = createSecretCodec(lookup, encKey)
    const source = validateSourceConfig(minimal, lookup)
    const sealed = codec.seal(source)
    expect(isSealed(sealed.config.appKey)).toBe(true)
    expect(codec.open(sealed)).toEqual(source)
    expect(() => codec.seal({ ...source, kind: 'teleporter' })).toThrow(/unknown source kind teleporter/)
  })
})
