// PDF from the HTML report, printed by headless Chromium (the Debian package
// `chromium`) run as a subprocess. Without Chromium the caller gets
// CITYSYNC_ERR_REPORT_PDF_UNAVAILABLE, which says how to install it.

import { execFile } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { CitysyncError } from '../../lib/errors.ts'

const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']

/** The Chromium binary: $CITYSYNC_CHROMIUM, else the first of chromium, chromium-browser, google-chrome on the PATH; null when none. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | null {
  const explicit = env.CITYSYNC_CHROMIUM
  if (explicit !== undefined && explicit !== '') return executable(explicit) ? explicit : null
  for (const dir of (env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    for (const name of CANDIDATES) {
      const p = join(dir, name)
      if (executable(p)) return p
    }
  }
  return null
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK)
    return true
  } catch {
    return false
  }
}

function run(bin: string, args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err as Error, { stderr }))
      else resolve({ stdout, stderr })
    })
  })
}

function baseArgs(dir: string): string[] {
  // --no-sandbox: services often run as root in containers, where Chromium's sandbox cannot start.
  return ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--no-default-browser-check', `--user-data-dir=${join(dir, 'profile')}`]
}

/** Prints `html` to PDF (A4). */
export async function htmlToPdf(html: string, opts: { chromium?: string | null; timeoutMs?: number } = {}): Promise<Buffer> {
  const bin = opts.chromium === undefined ? findChromium() : opts.chromium
  if (bin === null) throw new CitysyncError('CITYSYNC_ERR_REPORT_PDF_UNAVAILABLE', ['no chromium on the PATH, CITYSYNC_CHROMIUM unset'])
  const dir = mkdtempSync(join(tmpdir(), 'citysync-pdf-'))
  try {
    const page = join(dir, 'report.html')
    const out = join(dir, 'report.pdf')
    writeFileSync(page, html)
    try {
      await run(bin, [...baseArgs(dir), '--no-pdf-header-footer', `--print-to-pdf=${out}`, pathToFileURL(page).href], opts.timeoutMs ?? 120_000)
    } catch (err) {
      const stderr = String((err as { stderr?: string }).stderr ?? '').split('\n').slice(-5).join(' ')
      throw new CitysyncError('CITYSYNC_ERR_REPORT_PDF_FAILED', [`${(err as Error).message} ${stderr}`.trim()], { cause: err })
    }
    const pdf = readFileSync(out)
    if (pdf.subarray(0, 5).toString('latin1') !== '%PDF-') throw new CitysyncError('CITYSYNC_ERR_REPORT_PDF_FAILED', ['the output is not a PDF'])
    return pdf
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Opens `html` in headless Chromium and returns the DOM it built and the
 * console lines it logged (errors, failed loads, uncaught exceptions). For
 * checking that a report renders cleanly.
 */
export async function renderInChromium(html: string, opts: { chromium?: string | null; timeoutMs?: number } = {}): Promise<{ dom: string; console: string[] }> {
  const bin = opts.chromium === undefined ? findChromium() : opts.chromium
  if (bin === null) throw new CitysyncError('CITYSYNC_ERR_REPORT_PDF_UNAVAILABLE', ['no chromium on the PATH, CITYSYNC_CHROMIUM unset'])
  const dir = mkdtempSync(join(tmpdir(), 'citysync-render-'))
  try {
    const page = join(dir, 'report.html')
    writeFileSync(page, html)
    const { stdout, stderr } = await run(bin, [...baseArgs(dir), '--enable-logging=stderr', '--v=0', '--dump-dom', pathToFileURL(page).href], opts.timeoutMs ?? 120_000)
    const consoleLines = stderr.split('\n').filter((line) => /:CONSOLE[:(]/.test(line) || /Failed to load resource/.test(line))
    return { dom: stdout, console: consoleLines }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
