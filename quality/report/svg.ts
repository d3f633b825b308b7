// Inline SVG pictures for the HTML report: no scripts, no external files, so
// the page prints and opens anywhere.

import { type Labels } from './labels.ts'

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

/** Red (0) through amber to green (1). */
export function rateColour(rate: number): string {
  const r = Math.max(0, Math.min(1, rate))
  if (r >= 0.999) return '#1a9850'
  if (r >= 0.95) return '#66bd63'
  if (r >= 0.8) return '#fee08b'
  if (r >= 0.5) return '#fc8d59'
  return '#d73027'
}

const QUIET_FILL = '#eeeeee'
const MAINT_FILL = '#9ecae1'

/**
 * One row per local day, one cell per hour; colour by completeness, grey
 * where no data was expected, blue for maintenance. `cells` as in
 * SourceSection.heat.
 */
export function heatStripSvg(cells: readonly number[], dates: readonly string[], l: Labels): string {
  const cw = 14
  const ch = 9
  const left = 44
  const top = 16
  const days = dates.length
  const width = left + 24 * cw + 8
  const height = top + days * ch + 30
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(l.heatTitle)}">`]
  for (let h = 0; h < 24; h += 3) parts.push(`<text x="${left + h * cw + 1}" y="${top - 4}" font-size="8" fill="#555">${h}</text>`)
  for (let d = 0; d < days; d++) {
    const y = top + d * ch
    if (d % 2 === 0 || days <= 16) parts.push(`<text x="${left - 4}" y="${y + ch - 1}" font-size="7" text-anchor="end" fill="#555">${escapeXml(dates[d]!.slice(5))}</text>`)
    for (let h = 0; h < 24; h++) {
      const v = cells[d * 24 + h] ?? -1
      const fill = v === -1 ? QUIET_FILL : v === -2 ? MAINT_FILL : rateColour(v)
      const title = v >= 0 ? `${dates[d]} ${String(h).padStart(2, '0')}:00 ${(v * 100).toFixed(1)}%` : `${dates[d]} ${String(h).padStart(2, '0')}:00 ${v === -2 ? l.legendMaintenance : l.legendQuiet}`
      parts.push(`<rect x="${left + h * cw}" y="${y}" width="${cw - 1}" height="${ch - 1}" fill="${fill}"><title>${escapeXml(title)}</title></rect>`)
    }
  }
  const ly = top + days * ch + 10
  const legend: [string, string][] = [
    [rateColour(1), l.legendGood],
    [rateColour(0), l.legendBad],
    [QUIET_FILL, l.legendQuiet],
    [MAINT_FILL, l.legendMaintenance],
  ]
  let x = left
  for (const [fill, text] of legend) {
    parts.push(`<rect x="${x}" y="${ly}" width="10" height="8" fill="${fill}"/><text x="${x + 13}" y="${ly + 8}" font-size="8" fill="#333">${escapeXml(text)}</text>`)
    x += 22 + text.length * 8
  }
  parts.push('</svg>')
  return parts.join('')
}

/** Daily volumes: a bar per day (received), with the rejected records on top in red. */
export function dailyBarsSvg(daily: readonly { date: string; records: number; rejected: number }[], l: Labels): string {
  const bw = 12
  const left = 48
  const top = 10
  const h = 110
  const width = left + daily.length * bw + 10
  const height = top + h + 30
  let max = 0
  for (const d of daily) max = Math.max(max, d.records + d.rejected)
  const scale = max > 0 ? h / max : 0
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(l.volumeTitle)}">`]
  parts.push(`<line x1="${left}" y1="${top + h}" x2="${width - 6}" y2="${top + h}" stroke="#888" stroke-width="0.5"/>`)
  parts.push(`<text x="${left - 4}" y="${top + 8}" font-size="8" text-anchor="end" fill="#555">${max}</text><text x="${left - 4}" y="${top + h}" font-size="8" text-anchor="end" fill="#555">0</text>`)
  daily.forEach((d, i) => {
    const x = left + i * bw
    const gh = d.records * scale
    const rh = d.rejected * scale
    parts.push(`<rect x="${x}" y="${top + h - gh}" width="${bw - 2}" height="${gh}" fill="#4575b4"><title>${escapeXml(`${d.date}: ${d.records} / ${l.rejected} ${d.rejected}`)}</title></rect>`)
    if (rh > 0) parts.push(`<rect x="${x}" y="${top + h - gh - rh}" width="${bw - 2}" height="${rh}" fill="#d73027"/>`)
    if (i % 5 === 0) parts.push(`<text x="${x}" y="${top + h + 12}" font-size="7" fill="#555">${escapeXml(d.date.slice(5))}</text>`)
  })
  parts.push('</svg>')
  return parts.join('')
}
