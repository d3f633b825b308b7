// County files -> a header and rows of cells. Pure apart from exceljs.
//
// CSV, as county offices produce it (Excel, WPS, their own exports):
//   encoding  UTF-8 with a BOM, UTF-8 without one, or GB18030 (GBK is a subset):
//             a BOM decides; otherwise the bytes are read as strict UTF-8 and,
//             failing that, as GB18030.
//   delimiter comma or semicolon (Excel in some locales), whichever occurs more
//             often, outside quotes, in the header line.
//   quoting   RFC 4180: "..." with "" for a quote; CRLF or LF; line breaks inside quotes.
// XLSX: the first worksheet (or the named one); date cells become naive local
// text, numbers stay numbers.
// Either way, rows above the header (a title such as "如东县停车场数据报送表")
// are skipped: the header is the first row with at least two different non-empty cells.
// Empty rows are skipped. Row numbers are the file's own (1-based, as a person
// sees them in Excel or a text editor), so reasons point at the right line.

import ExcelJS from 'exceljs'

export const FILE_ENCODINGS = ['utf-8', 'utf-8-bom', 'gb18030'] as const
export type FileEncoding = (typeof FILE_ENCODINGS)[number]
export type Delimiter = ',' | ';'
export type Cell = string | number
export const FILE_FORMATS = ['csv', 'xlsx'] as const
export type FileFormat = (typeof FILE_FORMATS)[number]

export interface ParsedRow {
  /** 1-based row (line) number in the file. */
  line: number
  cells: Cell[]
}

export interface ParsedFile {
  format: FileFormat
  encoding: FileEncoding | null
  delimiter: Delimiter | null
  /** Header cells, trimmed. */
  header: string[]
  headerLine: number
  rows: ParsedRow[]
}

/** Why a whole file cannot be read; becomes an item error and the file goes to rejected/. */
export class UnreadableFile extends Error {
  override readonly name = 'UnreadableFile'
}

/** .csv or .xlsx by name; null for anything else. */
export function formatOf(fileName: string): FileFormat | null {
  const m = /\.(csv|xlsx)$/i.exec(fileName)
  return m === null ? null : (m[1]!.toLowerCase() as FileFormat)
}

export function decodeText(bytes: Uint8Array): { encoding: FileEncoding; text: string } {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    try {
      return { encoding: 'utf-8-bom', text: new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(3)) }
    } catch {
      throw new UnreadableFile('starts with a UTF-8 byte order mark but is not valid UTF-8')
    }
  }
  if (bytes.length >= 2 && ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))) {
    throw new UnreadableFile('is UTF-16 text; save it as CSV (UTF-8) or CSV (GB18030) instead')
  }
  try {
    return { encoding: 'utf-8', text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) }
  } catch {
    // Not UTF-8: county PCs export GBK/GB18030 by default.
  }
  try {
    return { encoding: 'gb18030', text: new TextDecoder('gb18030', { fatal: true }).decode(bytes) }
  } catch {
    throw new UnreadableFile('is neither UTF-8 nor GB18030 text')
  }
}

/** Comma or semicolon, whichever occurs more often outside quotes in `line` (comma on a tie). */
export function detectDelimiter(line: string): Delimiter {
  let commas = 0
  let semis = 0
  let quoted = false
  for (const ch of line) {
    if (ch === '"') quoted = !quoted
    else if (!quoted && ch === ',') commas++
    else if (!quoted && ch === ';') semis++
  }
  return semis > commas ? ';' : ','
}

/** RFC 4180 records with the line each starts on. A quote left open is an error. */
export function parseCsv(text: string, delimiter: Delimiter): ParsedRow[] {
  const rows: ParsedRow[] = []
  let cells: string[] = []
  let cell = ''
  let quoted = false
  let line = 1
  let startLine = 1
  let atCellStart = true
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          cell += '"'
          i++
        } else quoted = false
      } else {
        if (ch === '\n') line++
        cell += ch
      }
      continue
    }
    if (ch === '"' && atCellStart) {
      quoted = true
      atCellStart = false
      continue
    }
    if (ch === delimiter) {
      cells.push(cell)
      cell = ''
      atCellStart = true
      continue
    }
    if (ch === '\r' && text[i + 1] === '\n') continue
    if (ch === '\n' || ch === '\r') {
      cells.push(cell)
      rows.push({ line: startLine, cells })
      cells = []
      cell = ''
      atCellStart = true
      line++
      startLine = line
      continue
    }
    cell += ch
    atCellStart = false
  }
  if (quoted) throw new UnreadableFile(`a quoted field opened on line ${startLine} is never closed`)
  if (cell !== '' || cells.length > 0) {
    cells.push(cell)
    rows.push({ line: startLine, cells })
  }
  return rows
}

function isBlank(c: Cell): boolean {
  return typeof c === 'string' && c.trim() === ''
}

const HEADER_NOISE = /[\uFEFF\u200B\u3000]/g

/** Header text as compared with the configured names: trimmed, no BOM, no full-width or zero-width spaces. */
export function cleanHeader(text: string): string {
  return text.replace(HEADER_NOISE, ' ').trim()
}

function tabulate(all: ParsedRow[], base: Omit<ParsedFile, 'header' | 'headerLine' | 'rows'>): ParsedFile {
  // Merged title cells repeat one value across the row: count distinct values.
  const headerAt = all.findIndex((r) => new Set(r.cells.filter((c) => !isBlank(c)).map(String)).size >= 2)
  if (headerAt < 0) throw new UnreadableFile('has no header row (a row with at least two column names)')
  const headerRow = all[headerAt]!
  const header = headerRow.cells.map((c) => cleanHeader(String(c)))
  const rows = all.slice(headerAt + 1).filter((r) => r.cells.some((c) => !isBlank(c)))
  return { ...base, header, headerLine: headerRow.line, rows }
}

export function parseCsvFile(bytes: Uint8Array): ParsedFile {
  const { encoding, text } = decodeText(bytes)
  const firstLine = text.split(/\r?\n/).find((l) => /[,;]/.test(l)) ?? ''
  const delimiter = detectDelimiter(firstLine)
  return tabulate(parseCsv(text, delimiter), { format: 'csv', encoding, delimiter })
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0')
}

/**
 * exceljs gives date cells as a Date holding the wall-clock time as if it were
 * UTC (a spreadsheet has no zone); this turns it back into naive text.
 */
export function excelDateText(d: Date): string {
  const base = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
  return d.getUTCMilliseconds() === 0 ? base : `${base}.${pad(d.getUTCMilliseconds(), 3)}`
}

function cellValue(v: ExcelJS.CellValue): Cell {
  if (v === null || v === undefined) return ''
  if (typeof v === 'number' || typeof v === 'string') return v
  if (typeof v === 'boolean') return v ? '1' : '0'
  if (v instanceof Date) return excelDateText(v)
  if (typeof v === 'object') {
    if ('richText' in v) return v.richText.map((t) => t.text).join('')
    if ('result' in v) return cellValue((v as { result?: ExcelJS.CellValue }).result ?? null)
    if ('text' in v && typeof v.text === 'string') return v.text
    if ('error' in v) return String((v as { error: unknown }).error)
  }
  return ''
}

export async function parseXlsxFile(bytes: Uint8Array, sheet?: string): Promise<ParsedFile> {
  const wb = new ExcelJS.Workbook()
  try {
    await wb.xlsx.load(bytes as unknown as ArrayBuffer)
  } catch (err) {
    throw new UnreadableFile(`is not a readable .xlsx workbook (${(err as Error).message})`)
  }
  const ws = sheet === undefined ? wb.worksheets[0] : wb.getWorksheet(sheet)
  if (ws === undefined) {
    throw new UnreadableFile(sheet === undefined ? 'has no worksheet' : `has no worksheet named ${JSON.stringify(sheet)}`)
  }
  const all: ParsedRow[] = []
  ws.eachRow({ includeEmpty: false }, (row, rowNumber) => {
    const values = row.values as ExcelJS.CellValue[]
    const cells: Cell[] = []
    for (let i = 1; i < values.length; i++) cells.push(cellValue(values[i] ?? null))
    all.push({ line: rowNumber, cells })
  })
  return tabulate(all, { format: 'xlsx', encoding: null, delimiter: null })
}

/** Parses by file name; throws UnreadableFile with a reason a county operator can act on. */
export async function parseCountyFile(fileName: string, bytes: Uint8Array, sheet?: string): Promise<ParsedFile> {
  const format = formatOf(fileName)
  if (format === 'csv') return parseCsvFile(bytes)
  if (format === 'xlsx') return parseXlsxFile(bytes, sheet)
  throw new UnreadableFile('is not a .csv or .xlsx file')
}
