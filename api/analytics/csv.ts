// CSV as RFC 4180 writes it: CRLF line ends, a header row, fields quoted when
// they hold a comma, a quote, a line break or surrounding spaces (quotes
// doubled). null is an empty field; arrays and objects are written as JSON.
// UTF-8 without a byte-order mark.

function field(v: unknown): string {
  if (v === null || v === undefined) return ''
  const text = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' ? String(v) : JSON.stringify(v)
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

export function toCsv(columns: readonly string[], rows: readonly Record<string, unknown>[]): string {
  let out = columns.map(field).join(',') + '\r\n'
  for (const r of rows) out += columns.map((c) => field(r[c])).join(',') + '\r\n'
  return out
}

/** `format=csv|json` wins; otherwise CSV when the Accept header names text/csv before any JSON type. */
export function wantsCsv(format: string | undefined, accept: string | undefined): boolean {
  if (format !== undefined) return format === 'csv'
  if (accept === undefined) return false
  const types = accept.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase())
  const csv = types.indexOf('text/csv')
  if (csv < 0) return false
  const json = types.findIndex((t) => t === 'application/json' || t.endsWith('+json'))
  return json < 0 || csv < json
}
