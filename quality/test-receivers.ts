// For the sync-health tests: real local receivers for the notification
// channels (an HTTP server records every request and answers as told; an SMTP
// server records every mail), and a lander that puts events into ClickHouse
// through the real publisher, bus and sink.

import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { type AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { SMTPServer } from 'smtp-server'
import { type Clock } from '../lib/clock.ts'
import { type Subscription } from '../pipelines/bus/bus.ts'
import { MemoryBus } from '../pipelines/bus/memory-bus.ts'
import { Publisher } from '../pipelines/publisher.ts'
import { WarehouseSink } from '../pipelines/warehouse-sink.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { SchemaCatalogue } from '../schemas/catalogue.ts'

export interface Received {
  method: string
  path: string
  query: Record<string, string>
  headers: IncomingHttpHeaders
  body: unknown
}

export interface HttpReceiver {
  url: string
  requests: Received[]
  /** How to answer the next requests (default 200 with an empty JSON object); one entry is used per request, the last one stays. */
  answers: { status: number; body: unknown }[]
  close(): Promise<void>
}

export async function httpReceiver(): Promise<HttpReceiver> {
  const requests: Received[] = []
  const answers: { status: number; body: unknown }[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x')
      const text = Buffer.concat(chunks).toString('utf8')
      let body: unknown = text
      try {
        body = JSON.parse(text) as unknown
      } catch {
        // keep the text
      }
      requests.push({ method: req.method ?? '', path: u.pathname, query: Object.fromEntries(u.searchParams), headers: req.headers, body })
      const answer = answers.length > 1 ? answers.shift()! : (answers[0] ?? { status: 200, body: {} })
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    answers,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

export interface Mail {
  from: string
  to: string[]
  raw: string
}

export interface SmtpReceiver {
  port: number
  mails: Mail[]
  close(): Promise<void>
}

export async function smtpReceiver(): Promise<SmtpReceiver> {
  const mails: Mail[] = []
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        const envelope = session.envelope
        mails.push({
          from: envelope.mailFrom === false ? '' : envelope.mailFrom.address,
          to: envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        })
        callback()
      })
    },
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const port = (server.server.address() as AddressInfo).port
  return { port, mails, close: () => new Promise((resolve) => server.close(() => resolve())) }
}

/** Decodes RFC 2047 encoded words (=?UTF-8?B?…?= and =?UTF-8?Q?…?=) in a header value. */
export function decodeHeader(value: string): string {
  return value.replace(/\?=\s+=\?/g, '?==?').replace(/=\?utf-8\?([bq])\?([^?]*)\?=/gi, (_m, enc: string, text: string) =>
    enc.toLowerCase() === 'b'
      ? Buffer.from(text, 'base64').toString('utf8')
      : Buffer.from(text.replace(/_/g, ' ').replace(/=([0-9A-F]{2})/gi, (_x, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8'),
  )
}

/** A pino logger whose lines land in `lines` (parsed). */
export function capturingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  return { log: pino({ level: 'debug' }, sink), lines }
}

// ---------------------------------------------------------------------------
// Landing events the way connectors do: Publisher -> in-process bus ->
// warehouse sink -> ClickHouse (rows, ingest log, dead letters).

export class Lander {
  readonly #bus = new MemoryBus()
  readonly #stop = new AbortController()
  readonly #sink: WarehouseSink
  readonly #subscription: Subscription
  readonly #clock: Clock
  readonly #catalogue = SchemaCatalogue.load()

  constructor(warehouse: Warehouse, clock: Clock) {
    this.#clock = clock
    this.#sink = new WarehouseSink({ warehouse, catalogue: this.#catalogue, clock, log: pino({ level: 'silent' }) })
    this.#subscription = this.#sink.subscribe(this.#bus, this.#stop.signal, { maxWaitMs: 5 })
  }

  /** Publishes what `build` records for the source and returns once it has landed. */
  async land(sourceId: string, build: (p: Publisher) => void): Promise<void> {
    const p = new Publisher({
      sourceId,
      bus: this.#bus,
      catalogue: this.#catalogue,
      clock: this.#clock,
      protectPlate: (plate) => ({ plateKey: plate ? `k-${plate.length}` : null, plateCipher: null, plateMasked: plate ? '粤C·***45' : null }),
    })
    build(p)
    await p.flush()
  }

  async close(): Promise<void> {
    this.#stop.abort()
    await this.#subscription.done
    await this.#bus.close()
  }
}
