// For the API's integration tests: the embedded stack (metadata store with
// sealed secrets, in-process bus, warehouse sink, connector manager, the
// fastify app listening on a real port) over SQLite or PostgreSQL.

import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type FastifyInstance, type InjectOptions, type LightMyRequestResponse } from 'fastify'
import pg from 'pg'
import { type Logger, pino } from 'pino'
import { configSchemaFor } from '../connectors/registry.ts'
import { SourceManager } from '../connectors/sdk/manager.ts'
import { type Clock, systemClock } from '../lib/clock.ts'
import { deriveKeys, protectPlate } from '../lib/crypto.ts'
import { openMetadata, type Metadata } from '../lib/metadata/db.ts'
import { createSecretCodec } from '../lib/source-config.ts'
import { type Bus } from '../pipelines/bus/bus.ts'
import { MemoryBus } from '../pipelines/bus/memory-bus.ts'
import { WarehouseSink } from '../pipelines/warehouse-sink.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { QualityService } from '../quality/service.ts'
import { SchemaCatalogue } from '../schemas/catalogue.ts'
import { POSTGRES_URL, requireService } from '../infra/test/services.ts'
import { type Role } from '../lib/auth/permissions.ts'
import { AuthStore } from '../lib/auth/store.ts'
import { buildApp } from './app.ts'
import { type HygieneOptions } from './hygiene.ts'

export const KEYS = deriveKeys('api integration test master key')
export const catalogue = SchemaCatalogue.load()

async function postgresProblem(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3_000 })
  try {
    await client.connect()
    await client.query('select 1')
    return undefined
  } catch (err) {
    return `${POSTGRES_URL}: ${(err as Error).message}`
  } finally {
    await client.end().catch(() => undefined)
  }
}

export interface Backend {
  name: 'sqlite' | 'pg'
  /** False outside CI when PostgreSQL is not there (the tests skip loudly). */
  run: boolean
  open(clock: Clock): Promise<{ metadata: Metadata; drop: () => Promise<void> }>
}

export async function backends(): Promise<Backend[]> {
  const problem = await postgresProblem()
  const runPg = requireService('PostgreSQL', problem === undefined, problem ?? '')
  const secrets = createSecretCodec(configSchemaFor, KEYS.encKey)
  return [
    {
      name: 'sqlite',
      run: true,
      async open(clock) {
        const dataDir = mkdtempSync(join(tmpdir(), 'citysync-api-meta-'))
        const metadata = await openMetadata({ dataDir, secrets, clock })
        return { metadata, drop: () => Promise.resolve(rmSync(dataDir, { recursive: true, force: true })) }
      },
    },
    {
      name: 'pg',
      run: runPg,
      async open(clock) {
        const schema = `citysync_api_${process.pid}_${randomBytes(4).toString('hex')}`
        const metadata = await openMetadata({ databaseUrl: POSTGRES_URL, dataDir: tmpdir(), schema, secrets, clock })
        return {
          metadata,
          async drop() {
            const client = new pg.Client({ connectionString: POSTGRES_URL })
            await client.connect()
            try {
              await client.query(`drop schema if exists "${schema}" cascade`)
            } finally {
              await client.end()
            }
          },
        }
      },
    },
  ]
}

export interface Stack {
  app: FastifyInstance
  url: string
  metadata: Metadata
  bus: MemoryBus
  sink: WarehouseSink
  manager: SourceManager
  /** With options.quality: the quality service evaluating freshness on its own. */
  quality?: QualityService
  /** An admin API token: `Authorization: Bearer ${token}` (client() sends it when given). */
  token: string
  close(): Promise<void>
}

/** For tests that watch the stack from outside: its logger, a dead-letter bus for the sink, API options. */
export interface StackOptions {
  log?: Logger
  deadLetterBus?: Bus
  hygiene?: HygieneOptions
  /** Run the quality service (freshness, alerts, incidents) every intervalMs, as the embedded mode does every minute. */
  quality?: { intervalMs: number }
}

export async function startStack(backend: Backend, warehouse: Warehouse, clock: Clock = systemClock, options: StackOptions = {}): Promise<Stack> {
  const log = options.log ?? pino({ level: 'silent' })
  const { metadata, drop } = await backend.open(clock)
  const bus = new MemoryBus()
  const sink = new WarehouseSink({ warehouse, catalogue, clock, log, ...(options.deadLetterBus ? { deadLetterBus: options.deadLetterBus } : {}) })
  const stop = new AbortController()
  const subscription = sink.subscribe(bus, stop.signal, { maxWaitMs: 20 })
  const protect = (plate: string | null) => protectPlate(plate, KEYS)
  const manager = new SourceManager({ metadata, bus, catalogue, clock, log, protectPlate: protect, pollMs: 200 })
  await manager.start()
  const quality = options.quality && new QualityService({ metadata, warehouse, clock, log, intervalMs: options.quality.intervalMs, reports: false })
  quality?.start()
  const app = await buildApp({ metadata, warehouse, manager, logger: log, version: 'test', ingest: { bus, catalogue, protectPlate: protect, clock }, plates: { keys: KEYS }, auth: { encKey: KEYS.encKey, clock }, ...(options.hygiene ? { hygiene: options.hygiene } : {}), ...(quality ? { quality } : {}) })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const token = await adminToken(metadata, clock)
  return {
    app,
    url,
    token,
    metadata,
    bus,
    sink,
    manager,
    ...(quality ? { quality } : {}),
    async close() {
      await app.close()
      await quality?.stop()
      await manager.stopAll()
      stop.abort()
      await subscription.done
      await bus.close()
      await metadata.close()
      await drop()
    },
  }
}

export interface Answer {
  status: number
  text: string
  json: unknown
  headers: Headers
}

/** An API token of `role` made straight in the store (as `citysync tokens create` does); `clock` must be the app's. */
export async function roleToken(metadata: Metadata, role: Role, clock: Clock = systemClock, name = `test-${role}`): Promise<string> {
  const store = new AuthStore({ knex: metadata.knex, dialect: metadata.dialect, clock })
  return (await store.createToken({ name, role, expiresAt: clock.now() + 30 * 86_400_000, createdBy: 'test' })).token
}

export function adminToken(metadata: Metadata, clock: Clock = systemClock): Promise<string> {
  return roleToken(metadata, 'admin', clock)
}

/** Makes every `app.inject` without an Authorization header of its own carry an admin token; returns the token. */
export async function injectAsAdmin(app: FastifyInstance, metadata: Metadata, clock: Clock = systemClock): Promise<string> {
  const token = await adminToken(metadata, clock)
  const inject = app.inject.bind(app) as (opts: InjectOptions) => Promise<LightMyRequestResponse>
  const withToken = (opts: string | InjectOptions): Promise<LightMyRequestResponse> => {
    const o: InjectOptions = typeof opts === 'string' ? { url: opts } : opts
    return inject({ ...o, headers: { authorization: `Bearer ${token}`, ...o.headers } })
  }
  ;(app as unknown as { inject: typeof withToken }).inject = withToken
  return token
}

/** Real HTTP; every answer's raw text is kept so tests can search all of them. With `token`, requests carry it unless they set Authorization. */
export function client(base: string, seen: string[], token?: string): (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<Answer> {
  return async (method, path, body, headers = {}) => {
    const init: RequestInit = { method, headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...headers } }
    if (body !== undefined) {
      init.body = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body)
      ;(init.headers as Record<string, string>)['content-type'] ??= 'application/json'
    }
    const res = await fetch(base + path, init)
    const text = await res.text()
    seen.push(text)
    let json: unknown = undefined
    try {
      json = JSON.parse(text) as unknown
    } catch {
      // not JSON
    }
    return { status: res.status, text, json, headers: res.headers }
  }
}

export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
