// For the API's integration tests: the embedded stack (metadata store with
// sealed secrets, in-process bus, warehouse sink, connector manager, the
// fastify app listening on a real port) over SQLite or PostgreSQL.

import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type FastifyInstance } from 'fastify'
import pg from 'pg'
import { pino } from 'pino'
import { configSchemaFor } from '../connectors/registry.ts'
import { SourceManager } from '../connectors/sdk/manager.ts'
import { type Clock, systemClock } from '../lib/clock.ts'
import { deriveKeys, protectPlate } from '../lib/crypto.ts'
import { openMetadata, type Metadata } from '../lib/metadata/db.ts'
import { createSecretCodec } from '../lib/source-config.ts'
import { MemoryBus } from '../pipelines/bus/memory-bus.ts'
import { WarehouseSink } from '../pipelines/warehouse-sink.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { SchemaCatalogue } from '../schemas/catalogue.ts'
import { POSTGRES_URL, requireService } from '../infra/test/services.ts'
import { buildApp } from './app.ts'

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
  close(): Promise<void>
}

export async function startStack(backend: Backend, warehouse: Warehouse, clock: Clock = systemClock): Promise<Stack> {
  const log = pino({ level: 'silent' })
  const { metadata, drop } = await backend.open(clock)
  const bus = new MemoryBus()
  const sink = new WarehouseSink({ warehouse, catalogue, clock, log })
  const stop = new AbortController()
  const subscription = sink.subscribe(bus, stop.signal, { maxWaitMs: 20 })
  const protect = (plate: string | null) => protectPlate(plate, KEYS)
  const manager = new SourceManager({ metadata, bus, catalogue, clock, log, protectPlate: protect, pollMs: 200 })
  await manager.start()
  const app = await buildApp({ metadata, warehouse, manager, logger: log, version: 'test', ingest: { bus, catalogue, protectPlate: protect, clock } })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return {
    app,
    url,
    metadata,
    bus,
    sink,
    manager,
    async close() {
      await app.close()
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

/** Real HTTP; every answer's raw text is kept so tests can search all of them. */
export function client(base: string, seen: string[]): (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<Answer> {
  return async (method, path, body, headers = {}) => {
    const init: RequestInit = { method, headers: { ...headers } }
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
