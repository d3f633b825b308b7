import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { inspect } from 'node:util'
import avro, { type Type, type types } from 'avsc'
import { CitysyncError, errorMessage } from '../lib/errors.ts'
import { EVENT_NAMES, type EventName, type EventTypes } from './events.ts'
import { compileSkimmer, type SkimmedEvent, type Skimmer } from './skim.ts'

// Wire format (Confluent): byte 0 = magic 0x00, bytes 1..4 = schema id as a
// big-endian unsigned 32-bit integer, then the Avro binary body of the record
// written with that schema. Nothing follows the body.
const MAGIC = 0
const HEADER_SIZE = 5
/** Bytes before the Avro body of a wire message. */
export const WIRE_HEADER_SIZE = HEADER_SIZE
// Confluent Schema Registry ids are Java ints.
const MAX_SCHEMA_ID = 0x7fff_ffff

const NAMESPACE = 'citysync.v1'
const DEFAULT_DIR = dirname(fileURLToPath(import.meta.url))
const HISTORY_FILE = /^([a-z0-9]+(?:-[a-z0-9]+)*)\.v([1-9][0-9]*)\.avsc$/

// Unions stay unwrapped (null or the plain value) and no logical types are
// registered, so timestamp-millis longs decode as plain epoch-ms numbers.
// 'never' makes an ambiguous union a load error instead of a silent change
// of value shape. A fresh object per parse: avsc stores its registry of named
// types in the options, and a shared one would clash across loads.
const parseOptions = () => ({ wrapUnions: 'never', omitRecordMethods: true }) as const

type Resolver = ReturnType<Type['createResolver']>

export interface CatalogueEntry {
  readonly id: number
  readonly name: EventName
  readonly version: number
  /** Hex SHA-256 of the Avro parsing canonical form (docs and defaults do not count). */
  readonly fingerprint: string
  readonly type: types.RecordType
  /** Absolute path of the .avsc file. */
  readonly file: string
}

export interface WriterSchema {
  readonly text: string
  readonly fields: readonly string[]
}

export interface SkimmedMessage {
  name: EventName
  schemaId: number
  event: SkimmedEvent
}

export type ValidationResult = { ok: true } | { ok: false; path: string; message: string }

export type CompatibilityResult = { ok: true } | { ok: false; message: string }

export type DecodedEvent = { [N in EventName]: { name: N; schemaId: number; value: EventTypes[N] } }[EventName]

/**
 * Where wire ids come from. The default is the committed catalogue.json; a
 * Schema Registry client would register or look up the schema by content and
 * answer from a cache it filled before the catalogue was loaded.
 */
export interface SchemaIdSource {
  idFor(name: EventName, version: number, fingerprint: string): number
}

/** Ids from a JSON object mapping "Name@version" to id. */
export class LocalIdSource implements SchemaIdSource {
  readonly origin: string
  private readonly ids: ReadonlyMap<string, number>

  constructor(ids: Readonly<Record<string, number>>, origin = 'inline ids') {
    this.origin = origin
    this.ids = new Map(Object.entries(ids))
  }

  static fromFile(file: string): LocalIdSource {
    let parsed: unknown
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'))
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${file}: ${errorMessage(err)}`], { cause: err })
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${file}: expected an object of "Name@version": id`])
    }
    const ids: Record<string, number> = {}
    for (const [key, id] of Object.entries(parsed)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*@[1-9][0-9]*$/.test(key) || typeof id !== 'number') {
        throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${file}: entry ${key} must be "Name@version": id`])
      }
      ids[key] = id
    }
    return new LocalIdSource(ids, file)
  }

  idFor(name: EventName, version: number, _fingerprint: string): number {
    const id = this.ids.get(`${name}@${version}`)
    if (id === undefined) {
      throw new CitysyncError('CITYSYNC_ERR_SCHEMA_UNKNOWN', [`${name}@${version}: no id in ${this.origin}; give it the next free id`])
    }
    return id
  }
}

interface LatestSlot {
  readonly entry: CatalogueEntry
  readonly type: types.RecordType
  readonly id: number
  readonly enumFields: readonly EnumField[]
}

interface WriterSlot {
  readonly entry: CatalogueEntry
  readonly reader: types.RecordType
  /** Undefined when the writer is the latest version itself. */
  readonly resolver: Resolver | undefined
  /** Compiled on first use; null when the schema has a shape skim cannot walk. */
  skimmer?: Skimmer | null
}

// avsc looks enum symbols up in a plain object, so inherited keys such as
// "toString" or "__proto__" pass its checks and are written as symbol 0.
// These fields are checked against their symbol set before writing.
interface EnumField {
  readonly field: string
  readonly symbols: ReadonlySet<string>
  readonly type: Type
}

interface ParsedFile {
  readonly name: EventName
  readonly version: number
  readonly type: types.RecordType
  readonly file: string
}

export class SchemaCatalogue {
  /** Every known schema version, ordered by id. */
  readonly entries: readonly CatalogueEntry[]
  private readonly latestByName: ReadonlyMap<EventName, LatestSlot>
  private readonly writers: ReadonlyMap<number, WriterSlot>
  private scratch = Buffer.allocUnsafe(16 * 1024)
  private readonly texts = new Map<number, WriterSchema>()

  private constructor(latest: ReadonlyMap<EventName, LatestSlot>, writers: ReadonlyMap<number, WriterSlot>) {
    this.latestByName = latest
    this.writers = writers
    this.entries = [...writers.values()].map((w) => w.entry).sort((a, b) => a.id - b.id)
  }

  /**
   * Reads `dir/*.avsc` (latest versions) and `dir/history/<file>.v<N>.avsc`
   * (older ones). Every version from 1 up to the latest must be present, and
   * each must be readable by the latest, so that old data stays decodable.
   */
  static load(dir: string = DEFAULT_DIR, options: { ids?: SchemaIdSource } = {}): SchemaCatalogue {
    const ids = options.ids ?? LocalIdSource.fromFile(join(dir, 'catalogue.json'))

    const latestFiles = new Map<EventName, ParsedFile>()
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort()) {
      const parsed = parseSchemaFile(join(dir, file), file.slice(0, -'.avsc'.length), undefined)
      const clash = latestFiles.get(parsed.name)
      if (clash) fail(parsed.file, `${parsed.name} is already defined by ${clash.file}`)
      latestFiles.set(parsed.name, parsed)
    }

    const versions = new Map<EventName, Map<number, ParsedFile>>()
    for (const [name, parsed] of latestFiles) versions.set(name, new Map([[parsed.version, parsed]]))
    const historyDir = join(dir, 'history')
    if (existsSync(historyDir)) {
      for (const file of readdirSync(historyDir).filter((f) => f.endsWith('.avsc')).sort()) {
        const path = join(historyDir, file)
        const match = HISTORY_FILE.exec(file)
        if (!match) fail(path, 'history files are named <file>.v<N>.avsc')
        const parsed = parseSchemaFile(path, match[1] ?? '', Number(match[2]))
        const latest = latestFiles.get(parsed.name)
        if (!latest) fail(path, `no current schema for ${parsed.name} in ${dir}`)
        if (parsed.version >= latest.version) {
          fail(path, `history version ${parsed.version} is not older than the current ${latest.version}`)
        }
        const known = versions.get(parsed.name)
        if (known?.has(parsed.version)) fail(path, `${parsed.name}@${parsed.version} is defined twice`)
        known?.set(parsed.version, parsed)
      }
    }

    const latestSlots = new Map<EventName, LatestSlot>()
    const writers = new Map<number, WriterSlot>()
    const idOwners = new Map<number, string>()
    for (const name of EVENT_NAMES) {
      const latestFile = latestFiles.get(name)
      if (!latestFile) continue
      const byVersion = versions.get(name) ?? new Map<number, ParsedFile>()
      for (let v = 1; v <= latestFile.version; v++) {
        const parsed = byVersion.get(v)
        if (!parsed) {
          fail(latestFile.file, `${name}@${v} is missing: keep it as history/${fileStem(latestFile.file)}.v${v}.avsc so old data stays readable`)
        }
        const fingerprint = parsed.type.fingerprint('sha256').toString('hex')
        const id = ids.idFor(name, v, fingerprint)
        if (!Number.isInteger(id) || id < 1 || id > MAX_SCHEMA_ID) fail(parsed.file, `schema id ${id} for ${name}@${v} is not in 1..${MAX_SCHEMA_ID}`)
        const owner = idOwners.get(id)
        if (owner !== undefined) fail(parsed.file, `schema id ${id} is given to both ${owner} and ${name}@${v}`)
        idOwners.set(id, `${name}@${v}`)

        let resolver: Resolver | undefined
        if (parsed !== latestFile) {
          try {
            resolver = latestFile.type.createResolver(parsed.type)
          } catch (err) {
            fail(latestFile.file, `cannot read ${name}@${v} data: ${errorMessage(err)}`)
          }
        }
        const entry: CatalogueEntry = { id, name, version: v, fingerprint, type: parsed.type, file: parsed.file }
        writers.set(id, { entry, reader: latestFile.type, resolver })
        if (parsed === latestFile) {
          latestSlots.set(name, { entry, type: latestFile.type, id, enumFields: enumFieldsOf(latestFile.type) })
        }
      }
    }
    return new SchemaCatalogue(latestSlots, writers)
  }

  /** The current schema of an event; throws when the catalogue has none. */
  latest(name: EventName): CatalogueEntry {
    return this.latestSlot(name).entry
  }

  /** Any version by wire id, or undefined when the id is unknown. */
  byId(id: number): CatalogueEntry | undefined {
    return this.writers.get(id)?.entry
  }

  /**
   * The schema a wire id was written with, as its .avsc text and top-level
   * field names: what an Avro container holding bodies of that id declares.
   */
  writerSchema(id: number): WriterSchema | undefined {
    let w = this.texts.get(id)
    if (w === undefined) {
      const entry = this.writers.get(id)?.entry
      if (entry === undefined) return undefined
      w = { text: readFileSync(entry.file, 'utf8'), fields: entry.type.fields.map((f) => f.name) }
      this.texts.set(id, w)
    }
    return w
  }

  /** Validates and encodes with the latest schema, in the wire format above. */
  encode<N extends EventName>(name: N, value: EventTypes[N]): Buffer {
    const slot = this.latestSlot(name)
    const badEnum = checkEnumFields(slot.enumFields, value)
    if (badEnum) throw invalid(name, badEnum.path, badEnum.message)

    let end: number
    try {
      end = slot.type.encode(value, this.scratch, HEADER_SIZE)
      if (end < 0) {
        // encode returns minus the number of bytes it lacked.
        this.scratch = Buffer.allocUnsafe(Math.max(this.scratch.length * 2, this.scratch.length - end))
        end = slot.type.encode(value, this.scratch, HEADER_SIZE)
      }
    } catch (err) {
      const result = this.validate(name, value)
      if (!result.ok) throw invalid(name, result.path, result.message)
      throw new CitysyncError('CITYSYNC_ERR_SCHEMA_INVALID', [name, '(root)', errorMessage(err)], { cause: err })
    }
    this.scratch[0] = MAGIC
    this.scratch.writeUInt32BE(slot.id, 1)
    const out = Buffer.allocUnsafe(end)
    this.scratch.copy(out, 0, 0, end)
    return out
  }

  /**
   * Decodes a wire message written with any known version; older versions
   * are resolved into the latest schema (new fields take their defaults).
   */
  decode(buf: Buffer): DecodedEvent {
    const { schemaId } = wireHeader(buf)
    const writer = this.writers.get(schemaId)
    if (!writer) throw new CitysyncError('CITYSYNC_ERR_SCHEMA_WIRE', [`unknown schema id ${schemaId}`])
    let decoded: { value: unknown; offset: number }
    try {
      decoded = writer.reader.decode(buf, HEADER_SIZE, writer.resolver)
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_SCHEMA_WIRE', [`undecodable body for ${describeEntry(writer.entry)}: ${errorMessage(err)}`], {
        cause: err,
      })
    }
    if (decoded.offset < 0) {
      throw new CitysyncError('CITYSYNC_ERR_SCHEMA_WIRE', [`body truncated for ${describeEntry(writer.entry)} (${buf.length} bytes in all)`])
    }
    if (decoded.offset !== buf.length) {
      throw new CitysyncError('CITYSYNC_ERR_SCHEMA_WIRE', [
        `${buf.length - decoded.offset} trailing bytes after the body for ${describeEntry(writer.entry)}`,
      ])
    }
    return { name: writer.entry.name, schemaId, value: decoded.value } as DecodedEvent
  }

  /**
   * The sink's fields of a wire message (ids, times, backfill flag), read
   * without building the event: the body is walked and checked as decode
   * checks it. Falls back to a full decode for a schema it cannot walk.
   */
  skim(buf: Buffer): SkimmedMessage {
    const { schemaId } = wireHeader(buf)
    const writer = this.writers.get(schemaId)
    if (!writer) throw new CitysyncError('CITYSYNC_ERR_SCHEMA_WIRE', [`unknown schema id ${schemaId}`])
    if (writer.skimmer === undefined) writer.skimmer = compileSkimmer(writer.entry.type) ?? null
    if (writer.skimmer === null) {
      const { name, value } = this.decode(buf)
      const v = value as unknown as SkimmedEvent
      return { name, schemaId, event: { sourceId: v.sourceId, eventId: v.eventId, occurredAt: v.occurredAt, receivedAt: v.receivedAt, isBackfill: v.isBackfill === true } }
    }
    try {
      return { name: writer.entry.name, schemaId, event: writer.skimmer(buf, HEADER_SIZE) }
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_SCHEMA_WIRE', [`undecodable body for ${describeEntry(writer.entry)}: ${errorMessage(err)}`], { cause: err })
    }
  }

  /** Checks a value against the latest schema; on failure names the first bad field. */
  validate(name: EventName, value: unknown): ValidationResult {
    const slot = this.latestSlot(name)
    let first: { path: string; message: string } | undefined
    const ok = slot.type.isValid(value, {
      errorHook: (path: string[], bad: unknown, type: Type) => {
        first ??= { path: path.join('.'), message: mismatch(bad, type) }
      },
    })
    if (!ok) return { ok: false, path: first?.path ?? '', message: first?.message ?? 'invalid record' }
    const badEnum = checkEnumFields(slot.enumFields, value)
    if (badEnum) return { ok: false, ...badEnum }
    return { ok: true }
  }

  private latestSlot(name: EventName): LatestSlot {
    const slot = this.latestByName.get(name)
    if (!slot) throw new CitysyncError('CITYSYNC_ERR_SCHEMA_UNKNOWN', [name])
    return slot
  }
}

/** Reads the schema id of a wire message without touching the body. */
export function wireHeader(buf: Buffer): { schemaId: number } {
  if (buf.length < HEADER_SIZE) {
    throw new CitysyncError('CITYSYNC_ERR_SCHEMA_WIRE', [`${buf.length} bytes, shorter than the ${HEADER_SIZE}-byte header`])
  }
  if (buf[0] !== MAGIC) {
    throw new CitysyncError('CITYSYNC_ERR_SCHEMA_WIRE', [`magic byte ${hexByte(buf[0] ?? 0)}, expected ${hexByte(MAGIC)}`])
  }
  return { schemaId: buf.readUInt32BE(1) }
}

/**
 * BACKWARD compatibility: can a reader on `newType` read data written with
 * `oldType`? (Adding a field needs a default; removing one is fine.)
 */
export function checkBackwardCompatible(oldType: Type, newType: Type): CompatibilityResult {
  try {
    newType.createResolver(oldType)
    return { ok: true }
  } catch (err) {
    return { ok: false, message: errorMessage(err) }
  }
}

function parseSchemaFile(file: string, stem: string, historyVersion: number | undefined): ParsedFile {
  let json: unknown
  try {
    json = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    fail(file, errorMessage(err))
  }
  if (typeof json !== 'object' || json === null || (json as { type?: unknown }).type !== 'record') {
    fail(file, 'expected a record schema')
  }
  let type: Type
  try {
    type = avro.Type.forSchema(json as avro.Schema, parseOptions())
  } catch (err) {
    fail(file, errorMessage(err))
  }
  const fullName = type.name ?? ''
  const name = fullName.startsWith(`${NAMESPACE}.`) ? fullName.slice(NAMESPACE.length + 1) : undefined
  if (!isEventName(name)) fail(file, `record ${fullName} is not ${NAMESPACE}.<one of EVENT_NAMES>`)
  if (stem !== kebabCase(name)) fail(file, `${name} belongs in ${kebabCase(name)}.avsc`)

  const declared = (json as { version?: unknown }).version
  if (declared !== undefined && !(Number.isInteger(declared) && (declared as number) >= 1)) {
    fail(file, `version must be a positive integer, not ${inspect(declared)}`)
  }
  const version = historyVersion ?? (declared as number | undefined) ?? 1
  if (historyVersion !== undefined && declared !== undefined && declared !== historyVersion) {
    fail(file, `declares version ${inspect(declared)} but its name says v${historyVersion}`)
  }
  return { name, version, type: type as types.RecordType, file }
}

function enumFieldsOf(type: types.RecordType): EnumField[] {
  const out: EnumField[] = []
  for (const field of type.fields) {
    const branches = field.type.typeName.startsWith('union') ? (field.type as types.UnwrappedUnionType).types : [field.type]
    for (const branch of branches) {
      if (branch.typeName === 'enum') {
        out.push({ field: field.name, symbols: new Set((branch as types.EnumType).symbols), type: field.type })
      }
    }
  }
  return out
}

function checkEnumFields(fields: readonly EnumField[], value: unknown): { path: string; message: string } | undefined {
  if (fields.length === 0 || typeof value !== 'object' || value === null) return undefined
  for (const f of fields) {
    const v: unknown = (value as Record<string, unknown>)[f.field]
    if (typeof v === 'string' && !f.symbols.has(v)) return { path: f.field, message: mismatch(v, f.type) }
  }
  return undefined
}

function mismatch(value: unknown, type: Type): string {
  const got = value === undefined ? 'nothing (field missing)' : inspect(value, { depth: 0, breakLength: Infinity, maxStringLength: 80 })
  return `expected ${describeType(type)}, got ${got}`
}

function describeType(type: Type): string {
  if (type.typeName.startsWith('union')) return (type as types.UnwrappedUnionType).types.map(describeType).join(' | ')
  if (type.typeName === 'enum') return `enum ${unqualified(type.name)} {${(type as types.EnumType).symbols.join(', ')}}`
  if (type.typeName === 'record') return `record ${unqualified(type.name)}`
  return type.typeName
}

function invalid(name: EventName, path: string, message: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_SCHEMA_INVALID', [name, path || '(root)', message])
}

function describeEntry(entry: CatalogueEntry): string {
  return `schema id ${entry.id} (${entry.name}@${entry.version})`
}

function fail(file: string, what: string): never {
  throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`schema file ${file}: ${what}`])
}

function isEventName(name: string | undefined): name is EventName {
  return (EVENT_NAMES as readonly (string | undefined)[]).includes(name)
}

function kebabCase(name: string): string {
  return name.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? '' : '-') + c.toLowerCase())
}

function fileStem(file: string): string {
  return (file.split(/[\\/]/).pop() ?? file).replace(/\.avsc$/, '')
}

function unqualified(name: string | undefined): string {
  return (name ?? '').split('.').pop() ?? ''
}

function hexByte(b: number): string {
  return `0x${b.toString(16).padStart(2, '0')}`
}
