import { CitysyncError, errorMessage, isCitysyncError } from '../../lib/errors.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { type AnalystSqlConfig } from './config.ts'

// Read-only SQL for analysts (POST /api/v1/analytics/sql). On a ClickHouse
// server, analysts get a read-only user granted the analytics_* views
// (docs/metrics.md). chDB in process has no users, so this endpoint guards
// every statement itself before it runs:
//
// 1. The text: one statement (no `;` anywhere but at the end — chDB runs a
//    second statement after one), at most 100 kB.
// 2. It runs wrapped as `SELECT * FROM (<statement>) SETTINGS readonly = 1,
//    max_execution_time, max_result_rows, result_overflow_mode = 'throw',
//    max_memory_usage`. ClickHouse's own parser (EXPLAIN AST of the wrapped
//    text) must show exactly that shape: a single query whose only SETTINGS
//    clause is ours, outermost — inner SETTINGS would override readonly — and
//    no table functions; functions that reach outside the data (file,
//    dictionaries, joinGet, url-like, models, sleep) are refused by name.
// 3. Its analysis (EXPLAIN QUERY TREE) must read only the analytics_* views
//    of this database: every table the analyzer resolves — in FROM, JOIN, IN,
//    subqueries, CTEs — is checked.
// readonly = 1 refuses writes, DDL and table functions, and freezes the settings.

export const ANALYST_VIEWS = [
  'analytics_parking_lot',
  'analytics_parking_session',
  'analytics_parking_lot_hour',
  'analytics_parking_lot_day',
  'analytics_parking_district_hour',
  'analytics_parking_passage',
  'analytics_parking_occupancy',
  'analytics_bike_operator_status',
  'analytics_bike_station_status',
  'analytics_bike_station',
  'analytics_bike_trip',
  'analytics_ferry_sailing',
  'analytics_ferry_ticket',
  'analytics_ferry_checkin',
] as const

const MAX_SQL_BYTES = 100_000

const DENIED_FUNCTIONS = new Set([
  'file',
  'url',
  'joinget',
  'joingetornull',
  'hascolumnintable',
  'catboostevaluate',
  'modelevaluate',
  'naivebayesclassifier',
  'evalmlmethod',
  'sleep',
  'sleepeachrow',
  'getserversetting',
  'getmergetreesetting',
  'getclienthttpheader',
  'globalvariable',
  'getoskernelversion',
  'getmacro',
  'filesystemavailable',
  'filesystemcapacity',
  'filesystemunreserved',
  'dictionary',
  'input',
])
const DENIED_PREFIXES = ['dict', '__', 'addressto', 'demangle']

export function isDeniedFunction(name: string): boolean {
  const n = name.toLowerCase()
  return DENIED_FUNCTIONS.has(n) || DENIED_PREFIXES.some((p) => n.startsWith(p))
}

function refused(reason: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_ANALYTICS_SQL_REFUSED', [reason])
}

/** Step 1: one statement of reasonable size; returns it without trailing `;` and blanks. */
export function checkStatementText(sql: unknown): string {
  if (typeof sql !== 'string') throw refused('sql must be a string')
  if (Buffer.byteLength(sql) > MAX_SQL_BYTES) throw refused(`the statement is longer than ${MAX_SQL_BYTES} bytes`)
  const text = sql.replace(/[\s;]+$/, '')
  if (text.trim() === '') throw refused('the statement is empty')
  if (text.includes(';')) throw refused('one statement only: ";" may only end it (also not inside literals or comments)')
  if (text.includes('\0')) throw refused('the statement contains a NUL character')
  return text
}

export function wrap(text: string, settings: string): string {
  return `SELECT * FROM (\n${text}\n) SETTINGS ${settings}`
}

/** For EXPLAIN and DESCRIBE: read-only and bounded in time and memory, without the result limit (their output is not the result). */
function checkSettings(c: AnalystSqlConfig): string {
  return `readonly = 1, max_execution_time = ${Math.floor(c.maxExecutionSeconds)}, max_memory_usage = ${Math.floor(c.maxMemoryBytes)}`
}

export function limitSettings(c: AnalystSqlConfig): string {
  return [
    'readonly = 1',
    `max_execution_time = ${Math.floor(c.maxExecutionSeconds)}`,
    `max_result_rows = ${Math.floor(c.maxResultRows)}`,
    `result_overflow_mode = 'throw'`,
    `max_memory_usage = ${Math.floor(c.maxMemoryBytes)}`,
  ].join(', ')
}

interface AstLine {
  depth: number
  node: string
  name: string
}

function astLines(text: string): AstLine[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const depth = l.length - l.trimStart().length
      const [node = '', name = ''] = l.trim().split(/\s+/, 2)
      return { depth, node, name: name.startsWith('(') ? '' : name }
    })
}

/**
 * Step 2, pure: checks EXPLAIN AST output of a wrapped statement. Returns the
 * problems found (empty: the shape is ours).
 */
export function astProblems(explain: string): string[] {
  const lines = astLines(explain)
  const problems: string[] = []
  const root = lines[0]
  // SelectWithUnionQuery > ExpressionList > SelectQuery(select list, tables, Set)
  if (root?.node !== 'SelectWithUnionQuery' || lines.filter((l) => l.depth === root.depth + 1).length !== 1) {
    problems.push('not a single SELECT')
    return problems
  }
  const outer = lines.filter((l) => l.depth === root.depth + 2)
  const outerChildren = lines.filter((l) => l.depth === root.depth + 3)
  if (outer.length !== 1 || outer[0]!.node !== 'SelectQuery' || outerChildren.length !== 3 || outerChildren[2]!.node !== 'Set') {
    problems.push('the statement must be one query, without FORMAT, INTO OUTFILE or a trailing clause')
  }
  const sets = lines.filter((l) => l.node === 'Set')
  if (sets.length !== 1 || sets[0] !== outerChildren[2]) problems.push('SETTINGS are not allowed in the statement')
  lines.forEach((l, i) => {
    if (l.node === 'Function' && isDeniedFunction(l.name)) problems.push(`function ${l.name} is not allowed`)
    if (l.node === 'TableExpression') {
      const child = lines[i + 1]
      if (child !== undefined && child.depth === l.depth + 1 && child.node === 'Function') problems.push(`table function ${child.name} is not allowed`)
    }
  })
  return [...new Set(problems)]
}

/**
 * Step 3, pure: checks EXPLAIN QUERY TREE output. Every table must be one of
 * the analyst views of `database` (or system.one, for SELECT without FROM).
 */
export function queryTreeProblems(explain: string, database: string): string[] {
  const problems: string[] = []
  const allowed = new Set<string>([...ANALYST_VIEWS.map((v) => `${database}.${v}`), 'system.one'])
  for (const line of explain.split('\n')) {
    const t = line.trim()
    if (t.startsWith('TABLE_FUNCTION ')) {
      const name = /table_function_name: ([^\s,]+)/.exec(t)?.[1] ?? '?'
      problems.push(`table function ${name} is not allowed`)
    } else if (t.startsWith('TABLE ')) {
      const name = /table_name: ([^\s,]+)/.exec(t)?.[1] ?? '?'
      if (!allowed.has(name)) problems.push(`table ${name} is not one of the analytics views (${ANALYST_VIEWS.join(', ')})`)
    } else if (t.startsWith('FUNCTION ')) {
      const name = /function_name: ([^\s,]+)/.exec(t)?.[1] ?? '?'
      if (isDeniedFunction(name)) problems.push(`function ${name} is not allowed`)
    }
  }
  return [...new Set(problems)]
}

/** ClickHouse error codes that mean a limit stopped the query. */
const LIMIT_CODES = new Set([159, 160, 158, 396, 241, 307])

function clickhouseCode(err: unknown): number | undefined {
  const m = /Code: (\d+)\./.exec(errorMessage(err))
  return m ? Number(m[1]) : undefined
}

function cleanMessage(err: unknown): string {
  let msg = errorMessage(err).replace(/^warehouse query failed: /, '')
  msg = msg.replace(/\s*\(version [^)]*\)\s*$/, '')
  return msg.length > 2000 ? msg.slice(0, 2000) + '…' : msg
}

function failure(err: unknown): CitysyncError {
  if (isCitysyncError(err) && err.code === 'CITYSYNC_ERR_WAREHOUSE_UNAVAILABLE') return err
  const code = clickhouseCode(err)
  if (code !== undefined && LIMIT_CODES.has(code)) return new CitysyncError('CITYSYNC_ERR_ANALYTICS_SQL_LIMIT', [cleanMessage(err)], { cause: err })
  if (code === 164) return new CitysyncError('CITYSYNC_ERR_ANALYTICS_SQL_REFUSED', ['read-only: ' + cleanMessage(err)], { cause: err })
  return new CitysyncError('CITYSYNC_ERR_ANALYTICS_SQL_FAILED', [cleanMessage(err)], { cause: err })
}

async function explain(wh: Warehouse, kind: 'AST' | 'QUERY TREE', wrapped: string): Promise<string> {
  try {
    // As a subquery: a FORMAT the server driver appends then belongs to the outer SELECT, not to the statement explained.
    const rows = await wh.query<{ explain: string }>(`SELECT explain FROM (EXPLAIN ${kind} ${wrapped})`)
    return rows.map((r) => r.explain).join('\n')
  } catch (err) {
    throw failure(err)
  }
}

export interface AnalystResult {
  columns: { name: string; type: string }[]
  rows: Record<string, unknown>[]
  elapsedMs: number
}

/** Checks and runs one analyst statement under the limits. */
export async function runAnalystSql(wh: Warehouse, sql: unknown, limits: AnalystSqlConfig): Promise<AnalystResult> {
  const started = Date.now()
  const text = checkStatementText(sql)
  // The checks see the statement wrapped as it will run; readonly alone keeps
  // EXPLAIN itself from anything but reading.
  const probe = wrap(text, checkSettings(limits))
  const shape = astProblems(await explain(wh, 'AST', probe))
  if (shape.length > 0) throw refused(shape.join('; '))
  const [{ db }] = (await wh.query<{ db: string }>('SELECT currentDatabase() AS db')) as [{ db: string }]
  const tables = queryTreeProblems(await explain(wh, 'QUERY TREE', probe), db)
  if (tables.length > 0) throw refused(tables.join('; '))
  try {
    const columns = await wh.query<{ name: string; type: string }>(`DESCRIBE TABLE (${probe})`)
    const rows = await wh.query<Record<string, unknown>>(wrap(text, limitSettings(limits)))
    return { columns: columns.map((c) => ({ name: c.name, type: c.type })), rows, elapsedMs: Date.now() - started }
  } catch (err) {
    throw failure(err)
  }
}
