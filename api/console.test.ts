import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { ROLE_PERMISSIONS } from '../lib/auth/permissions.ts'
import { CONSOLE_DIR, consoleRoutes } from './console.ts'

// The console's static side without a browser: what the plugin serves, the
// two dictionaries, and the permission table the console hides buttons by.

type Dictionaries = Record<'zh' | 'en', Record<string, string>>

async function consoleModule<T>(file: string): Promise<T> {
  return (await import(pathToFileURL(join(CONSOLE_DIR, file)).href)) as T
}

function consoleSources(): { file: string; text: string }[] {
  const files = [...readdirSync(CONSOLE_DIR).filter((f) => f.endsWith('.js')), ...readdirSync(join(CONSOLE_DIR, 'views')).map((f) => `views/${f}`)]
  return files.map((file) => ({ file, text: readFileSync(join(CONSOLE_DIR, file), 'utf8') }))
}

describe('console plugin', () => {
  it('serves the page, its modules and the ECharts bundle, and nothing outside its folder', async () => {
    const app = Fastify()
    await app.register(consoleRoutes)
    try {
      const page = await app.inject('/')
      expect(page.statusCode).toBe(200)
      expect(page.headers['content-type']).toMatch(/^text\/html/)
      expect(page.headers['cache-control']).toBe('no-cache')
      expect(page.body).toContain('<script type="module" src="/console/console.js"></script>')

      const js = await app.inject('/console/views/board.js')
      expect(js.statusCode).toBe(200)
      expect(js.headers['content-type']).toMatch(/^(text|application)\/javascript/)
      expect((await app.inject('/console/console.css')).headers['content-type']).toMatch(/^text\/css/)

      const echarts = await app.inject('/console/vendor/echarts.min.js')
      expect(echarts.statusCode).toBe(200)
      expect(echarts.body.length).toBeGreaterThan(500_000)

      expect((await app.inject('/console')).headers.location).toBe('/')
      expect((await app.inject('/console/../console.ts')).statusCode).toBeGreaterThanOrEqual(400)
      expect((await app.inject('/console/%2e%2e/console.ts')).statusCode).toBeGreaterThanOrEqual(400)
      expect((await app.inject('/console/no-such-file.js')).statusCode).toBe(404)
    } finally {
      await app.close()
    }
  })

  it('has no inline script, style or event handler (the CSP allows none)', () => {
    const html = readFileSync(join(CONSOLE_DIR, 'index.html'), 'utf8')
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/)
    expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i)
    for (const { file, text } of consoleSources()) {
      expect(text, file).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/)
      expect(text, file).not.toMatch(/setAttribute\(\s*['"](style|on[a-z]+)['"]/)
    }
  })
})

describe('console labels', () => {
  it('has the same labels in Chinese and English, none empty', async () => {
    const { DICTIONARIES } = await consoleModule<{ DICTIONARIES: Dictionaries }>('i18n.js')
    expect(Object.keys(DICTIONARIES.en).sort()).toEqual(Object.keys(DICTIONARIES.zh).sort())
    for (const [lang, dict] of Object.entries(DICTIONARIES)) {
      for (const [key, text] of Object.entries(dict)) expect(text.trim(), `${lang} ${key}`).not.toBe('')
    }
  })

  it('has a label for every key the console names', async () => {
    const { DICTIONARIES } = await consoleModule<{ DICTIONARIES: Dictionaries }>('i18n.js')
    const keys = new Set(Object.keys(DICTIONARIES.zh))
    const used = new Set<string>()
    for (const { text } of consoleSources()) {
      for (const m of text.matchAll(/\bt\('([a-zA-Z0-9_.-]+)'/g)) used.add(m[1]!)
      // label lists such as ['board.state', 'alerts.source', …] for table headers
      for (const m of text.matchAll(/\[((?:'[a-z]+\.[a-zA-Z.]+',\s*)+'[a-z]+\.[a-zA-Z.]+')\]\.map\(\(k\)/g)) for (const k of m[1]!.matchAll(/'([^']+)'/g)) used.add(k[1]!)
    }
    expect(used.size).toBeGreaterThan(100)
    expect([...used].filter((k) => !keys.has(k))).toEqual([])
    for (const state of ['OK', 'LATE', 'STALLED', 'STOPPED', 'SKEWED', 'QUIET', 'MAINTENANCE']) expect(keys.has(`state.${state}`), state).toBe(true)
  })

  it('hides buttons by the same permission matrix the API enforces', async () => {
    const { ROLE_PERMISSIONS: inConsole, allowed } = await consoleModule<{ ROLE_PERMISSIONS: Record<string, string[]>; allowed: (me: unknown, p: string) => boolean }>('permissions.js')
    expect(Object.keys(inConsole).sort()).toEqual(Object.keys(ROLE_PERMISSIONS).sort())
    for (const [role, permissions] of Object.entries(ROLE_PERMISSIONS)) expect([...inConsole[role]!].sort(), role).toEqual([...permissions].sort())
    expect(allowed({ role: 'viewer' }, 'sources:write')).toBe(false)
    expect(allowed({ role: 'operator' }, 'alerts:write')).toBe(true)
    expect(allowed({ role: 'viewer', permissions: ['alerts:write'] }, 'alerts:write')).toBe(true)
    expect(allowed(null, 'health:read')).toBe(false)
  })
})
