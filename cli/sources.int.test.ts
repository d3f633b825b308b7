import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ParkingSimulator } from '../connectors/parking-lots/simulator.ts'

// `citysync sources …` as an operator runs it (a real process on SQLite
// metadata), refusing and allowing what the REST API does, with its codes.

const ROOT = new URL('..', import.meta.url).pathname
const APP_KEY = 'vendor-app-key-cli-3k8w'
let dataDir: string
let sim: ParkingSimulator
let simUrl: string

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'citysync-cli-sources-'))
  sim = new ParkingSimulator({ seed: 5, lots: 3, eventsPerMinute: 30, maxEvents: 40, appKey: APP_KEY, startAt: Date.now() - 3600_000 })
  simUrl = await sim.start(0)
})

afterAll(async () => {
  await sim.stop()
  rmSync(dataDir, { recursive: true, force: true })
})

// Asynchronous: the simulator answers from this process's event loop.
function citysync(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const { DATABASE_URL: _db, CLICKHOUSE_URL: _ch, KAFKA_BROKERS: _k, LOG_LEVEL: _l, ...env } = process.env
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'cli/main.ts', 'sources', ...args],
      { cwd: ROOT, env: { ...env, CITYSYNC_DATA_DIR: dataDir, CITYSYNC_MASTER_KEY: 'cli sources test master key' }, encoding: 'utf8' },
      (err, out, errText) => resolve({ code: err ? ((err as { code?: unknown }).code as number | null) : 0, out, err: errText }),
    )
  })
}

function file(name: string, content: object): string {
  const path = join(dataDir, name)
  writeFileSync(path, JSON.stringify(content))
  return path
}

const definition = (config: Record<string, unknown> = {}) => ({
  id: 'lots-cli',
  kind: 'parking-lots',
  name: 'CLI lots',
  schedule: { every: '1m' },
  config: { baseUrl: simUrl, appKey: APP_KEY, ...config },
})

// Each command is a process of its own (about 2 s of CPU to start): give the walk-through time.
describe('citysync sources', { timeout: 300_000 }, () => {
  it('adds, checks, deploys, pauses, moves the cursor, updates and removes, as the REST API does', async () => {
    const bad = await citysync('add', file('bad.json', definition({ pageSize: 5000, colour: 'red' })))
    expect(bad.code).toBe(1)
    expect(bad.err).toBe(
      `citysync: CITYSYNC_ERR_CONFIG_INVALID: invalid configuration: ${join(dataDir, 'bad.json')}:\n` +
        '  config.colour: is not an allowed property\n  config.pageSize: must be <= 1000\n',
    )

    expect(await citysync('add', file('good.json', definition()))).toEqual({
      code: 0,
      out: 'added lots-cli (parking-lots), paused\nrun `citysync sources deploy lots-cli` to start it\n',
      err: '',
    })
    expect(JSON.parse((await citysync('list', '--json')).out)).toEqual([{ id: 'lots-cli', kind: 'parking-lots', name: 'CLI lots', state: 'provisioned', version: 1 }])

    const check = await citysync('check', 'lots-cli')
    expect([check.code, check.out.split('\n')[0]]).toEqual([0, 'ok: 3 car parks found'])
    expect((await citysync('deploy', 'lots-cli')).out).toBe('lots-cli: check passed (3 car parks found), deployed\n')
    expect(await citysync('cursor', 'lots-cli', '--reset')).toEqual({
      code: 1,
      out: '',
      err: 'citysync: CITYSYNC_ERR_SOURCE_NOT_PAUSED: source lots-cli must be paused first: its cursor can only be changed while it is paused\n',
    })
    expect((await citysync('remove', 'lots-cli')).err).toBe(
      'citysync: CITYSYNC_ERR_SOURCE_NOT_PAUSED: source lots-cli must be paused first: pause it before removing it, or force the removal\n',
    )

    expect((await citysync('pause', 'lots-cli')).out).toBe('lots-cli: paused\n')
    expect((await citysync('cursor', 'lots-cli', '--set', '[1, 2]')).err).toBe(
      'citysync: CITYSYNC_ERR_SOURCE_CURSOR_INVALID: cursor for source lots-cli is invalid: cursor: must be an object\n',
    )
    expect((await citysync('cursor', 'lots-cli', '--set', '{"in": 5, "out": 3, "space": 2}')).out).toBe('lots-cli: cursor set (was null)\n')
    expect(JSON.parse((await citysync('cursor', 'lots-cli')).out)).toMatchObject({ cursor: { in: 5, out: 3, space: 2 } })
    expect((await citysync('cursor', 'lots-cli', '--reset')).out).toBe('lots-cli: cursor reset (was {"in":5,"out":3,"space":2})\n')

    const updated = await citysync('update', file('update.json', definition({ appKey: '******', pageSize: 20 })), '--expect-version', '1')
    expect(updated).toEqual({ code: 0, out: 'lots-cli: updated to version 2\n', err: '' })
    expect((await citysync('check', 'lots-cli')).out.split('\n')[0]).toBe('ok: 3 car parks found')

    const show = await citysync('show', 'lots-cli')
    expect(show.code).toBe(0)
    expect(show.out).not.toContain(APP_KEY)
    const shown = JSON.parse(show.out) as { config: Record<string, unknown>; version: number; status: { state: string }; cursor: unknown; history: { kind: string }[] }
    expect(shown).toMatchObject({ version: 2, config: { appKey: '******', pageSize: 20 }, status: { state: 'paused' }, cursor: null })
    expect(shown.history.map((e) => e.kind)).toEqual(['updated', 'cursor_reset', 'cursor_reset', 'paused', 'deployed', 'added'])

    expect((await citysync('remove', 'lots-cli')).out).toBe('lots-cli: removed\n')
  })

  it('refuses to deploy a source whose check fails unless forced, and to remove a deployed one unless forced', async () => {
    await citysync('add', file('down.json', { id: 'down-cli', kind: 'parking-lots', name: 'down', config: { baseUrl: 'http://127.0.0.1:9/' } }))
    const check = await citysync('check', 'down-cli')
    expect(check.code).toBe(1)
    expect(check.out).toMatch(/^failed: upstream answered no response to \/openapi\/v1\/parks: /)
    const deploy = await citysync('deploy', 'down-cli')
    expect(deploy.code).toBe(1)
    expect(deploy.err).toMatch(/^citysync: CITYSYNC_ERR_SOURCE_CHECK_FAILED: source down-cli failed its check: upstream answered no response .* \(deploy anyway with force\)\n$/)
    expect((await citysync('deploy', 'down-cli', '--force')).out).toBe('down-cli: check skipped, deployed\n')
    expect((await citysync('list')).out).toMatch(/^down-cli +parking-lots +idle +down\n/)
    expect((await citysync('remove', 'down-cli')).code).toBe(1)
    expect((await citysync('remove', 'down-cli', '--force')).out).toBe('down-cli: removed\n')
  })

  it('explains every command with examples', async () => {
    const help = (await citysync('--help')).out
    for (const cmd of ['add', 'update', 'list', 'show', 'check', 'deploy', 'pause', 'resume', 'restart', 'remove', 'cursor']) expect(help).toContain(`  ${cmd} `)
    expect(help).toContain('$ citysync sources cursor hengqin-parking --reset')
    expect((await citysync('cursor', '--help')).out).toContain(`$ citysync sources cursor hengqin-parking --set '{"in": 17000, "out": 16800, "space": 5000}'`)
  })
})
