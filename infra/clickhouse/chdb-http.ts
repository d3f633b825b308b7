// A ClickHouse HTTP endpoint for one host, backed by chDB (the ClickHouse
// engine in process). It answers the part of ClickHouse's HTTP interface that
// citysync's server driver (@clickhouse/client) uses: GET /ping, queries in the
// body or in `query`, `param_*` bindings, settings as URL parameters, and
// `INSERT INTO t [(columns)] FORMAT <fmt>` with the data in the body (Avro
// containers included; insert_deduplication_token too). Errors come back as ClickHouse's do: status 500, the
// X-ClickHouse-Exception-Code header and "Code: N. DB::Exception: ..." text.
//
// It lets several citysync processes (pipelines, quality, api) share one
// warehouse on a machine without a ClickHouse server package, and it is what
// the distributed-mode tests run against. A production site points
// CLICKHOUSE_URL at a real ClickHouse server instead.
//
//   npx tsx infra/clickhouse/chdb-http.ts --data ./data/warehouse --port 8123

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { mkdirSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { type RawInsertFormat, Session } from 'chdb'
import { insertAvroContainer, openSpool } from '../../pipelines/warehouse/chdb-warehouse.ts'

/** URL parameters that are not ClickHouse settings. */
const NOT_SETTINGS = new Set(['query', 'query_id', 'database', 'session_id', 'default_format', 'enable_http_compression', 'role', 'user', 'password'])
const INSERT_RE = /^\s*INSERT\s+INTO\s+([A-Za-z_][\w.]*|`[^`]+`)\s*(?:\(([^)]*)\))?\s*FORMAT\s+(\w+)\s*$/i

export interface ChdbHttpServer {
  url: string
  close(): Promise<void>
}

export async function startChdbHttp(o: { dataDir: string; port?: number; host?: string }): Promise<ChdbHttpServer> {
  mkdirSync(o.dataDir, { recursive: true })
  const session = new Session(o.dataDir, { connectionArgs: ['--async_load_databases=0', '--output_format_json_quote_64bit_integers=0'] })
  const spool = openSpool(o.dataDir)
  // One statement at a time: a chDB session is a single connection.
  let chain: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn, fn)
    chain = run.catch(() => undefined)
    return run
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => sendError(res, err))
  })

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname === '/ping' || (req.method === 'GET' && url.pathname === '/' && !url.searchParams.has('query'))) {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('Ok.\n')
      return
    }
    const body = await readBody(req)
    const params: Record<string, string> = {}
    const settings: Record<string, string> = {}
    for (const [k, v] of url.searchParams) {
      if (k.startsWith('param_')) params[k.slice(6)] = v
      else if (!NOT_SETTINGS.has(k)) settings[k] = v
    }
    const inUrl = url.searchParams.get('query')
    const sql = inUrl ?? body.toString('utf8')
    const insert = inUrl !== null ? INSERT_RE.exec(inUrl) : null
    if (insert) {
      const [, rawTable, rawColumns, format] = insert
      const table = rawTable!.replaceAll('`', '')
      const columns = rawColumns?.split(',').map((c) => c.trim().replaceAll('`', '')).filter((c) => c.length > 0)
      await serial(async () => {
        if (format === 'Avro') await insertAvroContainer(session, spool, table, columns, body, settings)
        else await session.insert({ table, values: body, format: format as RawInsertFormat, settings, ...(columns ? { columns } : {}) })
      })
      res.writeHead(200, { 'content-type': 'text/plain', 'x-clickhouse-format': format! }).end()
      return
    }
    const result = await serial(() =>
      Object.keys(params).length > 0 ? session.queryBindAsync(sql, params, { format: 'TabSeparated' }) : session.queryAsync(sql, { format: 'TabSeparated' }),
    )
    const text = result.text()
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(text)
  }

  await new Promise<void>((resolve) => server.listen(o.port ?? 0, o.host ?? '127.0.0.1', resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : o.port
  return {
    url: `http://${o.host ?? '127.0.0.1'}:${port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await chain
      session.close()
    },
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function sendError(res: ServerResponse, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err)
  const code = /Code: (\d+)/.exec(message)?.[1] ?? '1001'
  const text = message.includes('DB::Exception') ? message.replace(/^Query failed: /, '') : `Code: ${code}. DB::Exception: ${message}`
  if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'x-clickhouse-exception-code': code })
  res.end(text.endsWith('\n') ? text : text + '\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { data: { type: 'string', default: './data/warehouse' }, port: { type: 'string', default: '8123' }, host: { type: 'string', default: '127.0.0.1' } },
  })
  const s = await startChdbHttp({ dataDir: values.data, port: Number(values.port), host: values.host })
  process.stdout.write(`chdb-http: ClickHouse HTTP interface at ${s.url} (data ${values.data})\n`)
  const stop = (): void => {
    void s.close().then(() => process.exit(0))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
