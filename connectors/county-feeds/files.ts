// County file drop (`county-files`): CSV or XLSX files left in a folder (by
// SFTP, a shared drive, or POST /api/v1/county/:sourceId/files) are read,
// mapped row by row and moved out of the way.
//
// Folder contract, under `dropDir`:
//   *.csv, *.xlsx       waiting to be read; dotfiles (uploads in progress) are ignored,
//                       and so are files modified less than `settleMs` ago (still being copied)
//   processed/          one `<name>.receipt.json` per file whose rows have landed (bad rows
//                       dead-lettered); the file itself is deleted, since it holds plates in clear
//   rejected/           files that could not be read at all, duplicates and other types,
//                       each with a `<name>.reason.txt` beside it, kept for an operator to
//                       look at for `rejectedRetentionDays` (default 7), then deleted
//
// Cursor: `files` maps the SHA-256 (first 32 hex digits) of every file read to
// when it was read, so a file with the same content is never landed twice,
// whatever its name; `pending` lists files read in an earlier run that are still
// to be moved. A file is moved only on the run after the one that read it,
// i.e. after the runtime has saved the checkpoint that follows its rows, which
// it does only once they have landed: a crash before that leaves the file in
// place and unknown to the cursor, and it is read again (the pipeline drops
// what had already landed).

import { createHash } from 'node:crypto'
import { constants } from 'node:fs'
import { access, mkdir, readFile, readdir, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises'
import { basename, extname, join } from 'node:path'
import { CitysyncError } from '../../lib/errors.ts'
import { type CheckResult, type Connector, type Ctx, type JsonSchema, type SourceMessage, checkpoint, itemError } from '../sdk/connector.ts'
import { ANY_LOT } from '../parking-lots/db-pull.ts'
import { type DatasetConfig, type Field, type Layout, DEFAULT_DATASETS, chooseLayout, datasetSchema, mapCountyRow } from './map.ts'
import { type ParsedFile, UnreadableFile, formatOf, parseCountyFile } from './parse.ts'

export interface CountyFilesConfig {
  /** The county (区县) that sends the files, e.g. 如东县. */
  county: string
  /** Folder watched for files; processed/ and rejected/ are made inside it. */
  dropDir: string
  /** What the files hold and how their headers are named (default: the three kinds, common headers). */
  datasets?: DatasetConfig[]
  /** XLSX: the worksheet to read (default the first). */
  sheet?: string
  /** When given, rows of other car parks are refused as unknown_lot. */
  lots?: string[]
  /** Larger files are refused (default 20 MiB). */
  maxFileBytes?: number
  /** A file is read once it has not changed for this long (default 5 s). */
  settleMs?: number
  futureToleranceMs?: number
  /** How many file hashes the cursor keeps (default 5000). */
  remember?: number
  /** Rejected files (and their reasons) are deleted after this many days (default 7). */
  rejectedRetentionDays?: number
}

export type FileOutcome = 'processed' | 'rejected'

export interface CountyFilesCursor {
  /** sha256 prefix -> epoch ms when read. */
  files: Record<string, number>
  pending: { name: string; hash: string; outcome: FileOutcome; reason?: string }[]
}

export const COUNTY_FILE_DEFAULTS = {
  maxFileBytes: 20 * 1024 * 1024,
  settleMs: 5_000,
  futureToleranceMs: 300_000,
  remember: 5_000,
  rejectedRetentionDays: 7,
} as const

export const PROCESSED_DIR = 'processed'
export const REJECTED_DIR = 'rejected'

const configSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['county', 'dropDir'],
  properties: {
    county: { type: 'string', minLength: 1 },
    dropDir: { type: 'string', minLength: 1 },
    datasets: { type: 'array', items: datasetSchema(), minItems: 1 },
    sheet: { type: 'string', minLength: 1 },
    lots: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true },
    maxFileBytes: { type: 'integer', minimum: 1024, maximum: 512 * 1024 * 1024, default: COUNTY_FILE_DEFAULTS.maxFileBytes },
    settleMs: { type: 'integer', minimum: 0, default: COUNTY_FILE_DEFAULTS.settleMs },
    futureToleranceMs: { type: 'integer', minimum: 0, default: COUNTY_FILE_DEFAULTS.futureToleranceMs },
    remember: { type: 'integer', minimum: 10, maximum: 100_000, default: COUNTY_FILE_DEFAULTS.remember },
    rejectedRetentionDays: { type: 'integer', minimum: 1, maximum: 3650, default: COUNTY_FILE_DEFAULTS.rejectedRetentionDays },
  },
}

export function fileHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 32)
}

function startCursor(cursor: CountyFilesCursor | undefined): CountyFilesCursor {
  if (cursor === undefined || cursor === null) return { files: {}, pending: [] }
  const c = cursor as Partial<CountyFilesCursor>
  if (typeof c.files !== 'object' || c.files === null || !Array.isArray(c.pending)) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`cursor must be {files, pending}, got ${JSON.stringify(cursor).slice(0, 200)}`])
  }
  return { files: { ...c.files }, pending: [...c.pending] }
}

/** Keeps the newest `max` hashes. */
function trim(files: Record<string, number>, max: number): Record<string, number> {
  const entries = Object.entries(files)
  if (entries.length <= max) return files
  return Object.fromEntries(entries.sort((a, b) => b[1] - a[1]).slice(0, max))
}

async function exists(path: string): Promise<boolean> {
  return access(path, constants.F_OK).then(
    () => true,
    () => false,
  )
}

/** `dir/name`, or `dir/name-2.ext`, `-3`... when taken. */
export async function freeName(dir: string, name: string): Promise<string> {
  if (!(await exists(join(dir, name)))) return name
  const ext = extname(name)
  const stem = name.slice(0, name.length - ext.length)
  for (let n = 2; ; n++) {
    const candidate = `${stem}-${n}${ext}`
    if (!(await exists(join(dir, candidate)))) return candidate
  }
}

/**
 * Takes dropDir/name out of the way. A processed file's rows have landed and it
 * holds plates in clear, so it is replaced by a receipt (name, size, SHA-256,
 * when); a rejected one is moved to rejected/ (without overwriting) with its
 * reason, for an operator to look at, until purgeRejected deletes it.
 */
async function moveOut(dropDir: string, name: string, outcome: FileOutcome, now: number, reason?: string): Promise<string> {
  const dir = join(dropDir, outcome === 'processed' ? PROCESSED_DIR : REJECTED_DIR)
  await mkdir(dir, { recursive: true })
  const source = join(dropDir, name)
  if (outcome === 'processed') {
    const bytes = await readFile(source)
    const target = await freeName(dir, `${name}.receipt.json`)
    const receipt = { file: name, bytes: bytes.length, sha256: fileHash(bytes), landedAt: new Date(now).toISOString() }
    await writeFile(join(dir, target), `${JSON.stringify(receipt, null, 2)}\n`)
    await unlink(source)
    return target
  }
  const target = await freeName(dir, name)
  await rename(source, join(dir, target))
  // Retention counts from the rejection, not from when the county wrote the file.
  const at = new Date(now)
  await utimes(join(dir, target), at, at)
  if (reason !== undefined) {
    await writeFile(join(dir, `${target}.reason.txt`), `${reason}\n`)
    await utimes(join(dir, `${target}.reason.txt`), at, at)
  }
  return target
}

/** Deletes rejected files (and reasons) older than the retention; they may hold plates in clear. */
async function purgeRejected(dropDir: string, retentionDays: number, now: number): Promise<number> {
  const dir = join(dropDir, REJECTED_DIR)
  const names = await readdir(dir).catch(() => [] as string[])
  let purged = 0
  for (const name of names) {
    const path = join(dir, name)
    const s = await stat(path).catch(() => undefined)
    if (s === undefined || !s.isFile() || now - s.mtimeMs < retentionDays * 86_400_000) continue
    await unlink(path).catch(() => undefined)
    if (!name.endsWith('.reason.txt')) purged++
  }
  return purged
}

export interface FileLayout {
  parsed: ParsedFile
  layout: Layout
}

/** Reads a file's header and finds its dataset; throws UnreadableFile with the reason. */
export async function readLayout(name: string, bytes: Uint8Array, config: CountyFilesConfig): Promise<FileLayout> {
  const parsed = await parseCountyFile(name, bytes, config.sheet)
  const chosen = chooseLayout(name, parsed.header, config.datasets ?? DEFAULT_DATASETS)
  if ('reason' in chosen) throw new UnreadableFile(chosen.reason)
  return { parsed, layout: chosen.layout }
}

function rowsOf(name: string, fl: FileLayout, config: CountyFilesConfig, ctx: Ctx, lotTime: number): SourceMessage<never>[] {
  const { parsed, layout } = fl
  const index = new Map<Field, number>()
  for (const [field, header] of Object.entries(layout.names) as [Field, string][]) index.set(field, parsed.header.indexOf(header))
  const knownLots = config.lots === undefined ? ANY_LOT : new Set(config.lots)
  const out: SourceMessage<never>[] = []
  for (const row of parsed.rows) {
    const raw: Record<string, unknown> = {}
    parsed.header.forEach((h, i) => {
      if (h !== '') raw[h] = row.cells[i] ?? ''
    })
    const get = (f: Field): unknown => {
      const i = index.get(f)
      return i === undefined || i < 0 ? undefined : row.cells[i]
    }
    out.push(
      ...mapCountyRow(layout, get, raw, `file ${name} row ${row.line}`, {
        timezone: ctx.timezone,
        now: ctx.clock.now(),
        futureToleranceMs: config.futureToleranceMs ?? COUNTY_FILE_DEFAULTS.futureToleranceMs,
        knownLots,
        lotTime,
        county: config.county,
      }),
    )
  }
  return out
}

interface Waiting {
  name: string
  size: number
  mtimeMs: number
}

async function waitingFiles(dropDir: string, settleMs: number): Promise<Waiting[]> {
  const out: Waiting[] = []
  for (const entry of await readdir(dropDir, { withFileTypes: true })) {
    if (!entry.isFile() || entry.name.startsWith('.') || entry.name.endsWith('.reason.txt')) continue
    const st = await stat(join(dropDir, entry.name)).catch(() => undefined)
    if (st === undefined) continue
    // File times are the file system's, not event times: compared with the wall clock.
    if (settleMs > 0 && Date.now() - st.mtimeMs < settleMs) continue
    out.push({ name: entry.name, size: st.size, mtimeMs: st.mtimeMs })
  }
  return out.sort((a, b) => a.mtimeMs - b.mtimeMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

export const countyFilesConnector: Connector<CountyFilesConfig, CountyFilesCursor> = {
  kind: 'county-files',
  title: 'County file drop (CSV, XLSX)',
  configSchema,

  async check(config: CountyFilesConfig): Promise<CheckResult> {
    try {
      await mkdir(config.dropDir, { recursive: true })
      await access(config.dropDir, constants.W_OK | constants.R_OK)
      const waiting = await waitingFiles(config.dropDir, 0)
      return { ok: true, message: `${waiting.length} file${waiting.length === 1 ? '' : 's'} waiting in ${config.dropDir}`, details: { waiting: waiting.length } }
    } catch (err) {
      return { ok: false, message: `drop folder ${config.dropDir}: ${(err as Error).message}` }
    }
  },

  async *read(config: CountyFilesConfig, cursor: CountyFilesCursor | undefined, ctx: Ctx) {
    const cur = startCursor(cursor)
    const { dropDir } = config
    const maxBytes = config.maxFileBytes ?? COUNTY_FILE_DEFAULTS.maxFileBytes
    const remember = config.remember ?? COUNTY_FILE_DEFAULTS.remember
    await mkdir(dropDir, { recursive: true })
    const purged = await purgeRejected(dropDir, config.rejectedRetentionDays ?? COUNTY_FILE_DEFAULTS.rejectedRetentionDays, ctx.clock.now())
    if (purged > 0) ctx.log.info({ purged }, 'rejected county files past their retention deleted')

    // Files whose rows landed in an earlier run: out of the way now.
    if (cur.pending.length > 0) {
      for (const p of cur.pending) {
        const path = join(dropDir, p.name)
        const bytes = await readFile(path).catch(() => undefined)
        if (bytes !== undefined && fileHash(bytes) === p.hash) await moveOut(dropDir, p.name, p.outcome, ctx.clock.now(), p.reason)
      }
      cur.pending = []
      yield checkpoint({ files: { ...cur.files }, pending: [] })
    }

    for (const f of await waitingFiles(dropDir, config.settleMs ?? COUNTY_FILE_DEFAULTS.settleMs)) {
      if (ctx.signal.aborted) return
      const describe = { file: f.name, bytes: f.size }
      const refuse = async (code: string, reason: string, extra: Record<string, unknown> = {}): Promise<SourceMessage<CountyFilesCursor>> => {
        const moved = await moveOut(dropDir, f.name, 'rejected', ctx.clock.now(), reason)
        ctx.log.warn({ file: f.name, movedTo: `${REJECTED_DIR}/${moved}`, code }, reason)
        return itemError(null, code, `file ${f.name}: ${reason}`, { ...describe, ...extra })
      }
      if (formatOf(f.name) === null) {
        yield await refuse('unsupported_file', `${extname(f.name) || 'a file without an extension'} is not a county data file; send .csv or .xlsx`)
        continue
      }
      if (f.size > maxBytes) {
        yield await refuse('file_too_large', `${f.size} bytes is more than the ${maxBytes} allowed`)
        continue
      }
      const bytes = await readFile(join(dropDir, f.name))
      const hash = fileHash(bytes)
      const seenAt = cur.files[hash]
      if (seenAt !== undefined) {
        yield await refuse('duplicate_file', `same content as a file read at ${new Date(seenAt).toISOString()}; not landed again`, { sha256: hash })
        continue
      }

      let outcome: FileOutcome = 'processed'
      let reason: string | undefined
      try {
        const fl = await readLayout(f.name, bytes, config)
        let good = 0
        let bad = 0
        for (const m of rowsOf(f.name, fl, config, ctx, Math.floor(f.mtimeMs / 1000) * 1000)) {
          if (m.type === 'itemError') bad++
          else if (m.type === 'record') good++
          yield m
        }
        ctx.log.info(
          { file: f.name, dataset: fl.layout.dataset.name ?? fl.layout.dataset.kind, encoding: fl.parsed.encoding, delimiter: fl.parsed.delimiter, rows: fl.parsed.rows.length, records: good, rejected: bad },
          'county file read',
        )
      } catch (err) {
        if (!(err instanceof UnreadableFile)) throw err
        outcome = 'rejected'
        reason = err.message
        yield itemError(null, 'unreadable_file', `file ${f.name}: ${err.message}`, { ...describe, sha256: hash })
      }
      cur.files = trim({ ...cur.files, [hash]: ctx.clock.now() }, remember)
      cur.pending.push(reason === undefined ? { name: f.name, hash, outcome } : { name: f.name, hash, outcome, reason })
      yield checkpoint({ files: { ...cur.files }, pending: [...cur.pending] })
    }
  },
}

export interface StoredUpload {
  file: string
  bytes: number
  sha256: string
  format: 'csv' | 'xlsx'
  encoding: string | null
  delimiter: string | null
  dataset: string
  rows: number
}

/**
 * Stores an uploaded file in the source's drop folder, after checking that it
 * can be read and fits a dataset, and that its content was not landed before.
 * The file appears under its name (or name-2, -3... when taken) by an atomic
 * rename, so the watcher never sees half a file.
 */
export async function storeUpload(config: CountyFilesConfig, cursor: CountyFilesCursor | undefined, name: string, bytes: Uint8Array, now: number): Promise<StoredUpload> {
  const clean = basename(name).trim()
  if (clean === '' || clean.startsWith('.') || clean !== name.trim() || formatOf(clean) === null) {
    throw new CitysyncError('CITYSYNC_ERR_COUNTY_FILE', [JSON.stringify(name), 'the name must be a plain file name ending in .csv or .xlsx'])
  }
  const maxBytes = config.maxFileBytes ?? COUNTY_FILE_DEFAULTS.maxFileBytes
  if (bytes.length > maxBytes) throw new CitysyncError('CITYSYNC_ERR_COUNTY_FILE_TOO_LARGE', [maxBytes])
  if (bytes.length === 0) throw new CitysyncError('CITYSYNC_ERR_COUNTY_FILE', [clean, 'it is empty'])
  const hash = fileHash(bytes)
  const seen = cursor?.files?.[hash]
  if (seen !== undefined) throw new CitysyncError('CITYSYNC_ERR_COUNTY_FILE_DUPLICATE', [clean, `a file read at ${new Date(seen).toISOString()}`])
  let fl: FileLayout
  try {
    fl = await readLayout(clean, bytes, config)
  } catch (err) {
    if (err instanceof UnreadableFile) throw new CitysyncError('CITYSYNC_ERR_COUNTY_FILE', [clean, err.message], { cause: err })
    throw err
  }
  await mkdir(config.dropDir, { recursive: true })
  const target = await freeName(config.dropDir, clean)
  const temp = join(config.dropDir, `.${target}.${now}.uploading`)
  await writeFile(temp, bytes, { flag: 'wx' })
  await rename(temp, join(config.dropDir, target))
  return {
    file: target,
    bytes: bytes.length,
    sha256: hash,
    format: fl.parsed.format,
    encoding: fl.parsed.encoding,
    delimiter: fl.parsed.delimiter,
    dataset: fl.layout.dataset.name ?? fl.layout.dataset.kind,
    rows: fl.parsed.rows.length,
  }
}
