import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { REPO } from '../infra/test/processes.ts'
import { loadConfig } from '../lib/config.ts'
import { type Embedded, startEmbedded } from './embedded.ts'

// `citysync users` and `citysync tokens` against the data directory of a
// running embedded process: the generated bootstrap token works until the
// first admin is added on the command line, then that admin's token does;
// every change lands in the audit log under cli:<OS user>.

let dir: string
let e: Embedded

function cli(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], {
      cwd: REPO,
      env: { ...process.env, CITYSYNC_DATA_DIR: dir, CITYSYNC_BOOTSTRAP_TOKEN: '', DATABASE_URL: '', KAFKA_BROKERS: '', CLICKHOUSE_URL: '', LOG_LEVEL: 'warn' },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.stdin.end(stdin ?? '')
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

const get = (path: string, token: string): Promise<Response> => fetch(e.url + path, { headers: { authorization: `Bearer ${token}` } })

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-cli-users-'))
  const saved = process.env.CITYSYNC_BOOTSTRAP_TOKEN
  delete process.env.CITYSYNC_BOOTSTRAP_TOKEN
  try {
    e = await startEmbedded({ cfg: { ...loadConfig({ CITYSYNC_DATA_DIR: dir }), port: 0 }, demo: false, log: pino({ level: 'silent' }), maxWaitMs: 50 })
  } finally {
    if (saved !== undefined) process.env.CITYSYNC_BOOTSTRAP_TOKEN = saved
  }
})

afterAll(async () => {
  await e.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('citysync users / tokens', () => {
  it('makes a bootstrap token for a store without users, readable by its owner only', async () => {
    const file = join(dir, 'bootstrap-token')
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const token = readFileSync(file, 'utf8').trim()
    expect(token).toBe(e.bootstrapToken)
    expect(token.length).toBeGreaterThanOrEqual(24)
    expect((await get('/api/v1/users', token)).status).toBe(200)
    expect((await fetch(e.url + '/api/v1/users')).status).toBe(401)
  })

  it('adds the first admin; the bootstrap token stops, a token made on the command line works', { timeout: 120_000 }, async () => {
    const weak = await cli(['users', 'add', 'wang.admin', '--role', 'admin', '--password-stdin'], 'short\n')
    expect(weak.code).toBe(1)
    expect(weak.stderr).toContain('CITYSYNC_ERR_AUTH_PASSWORD_POLICY')

    const added = await cli(['users', 'add', 'wang.admin', '--role', 'admin', '--password-stdin'], 'admin password of wang 1\n')
    expect(added.stderr).toBe('')
    expect(added.stdout).toBe('added wang.admin (admin)\n')
    expect((await get('/api/v1/users', e.bootstrapToken!)).status).toBe(401)

    // No password given and no terminal: one is generated and printed once.
    const generated = await cli(['users', 'add', 'li.gong', '--role', 'operator'])
    expect(generated.stdout).toMatch(/^added li\.gong \(operator\)\npassword \(shown once\): [A-Za-z0-9_-]{24}\n$/)
    const password = /shown once\): (\S+)/.exec(generated.stdout)![1]!
    const login = await fetch(e.url + '/api/v1/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'li.gong', password }) })
    expect(login.status).toBe(200)

    const made = await cli(['tokens', 'create', '--name', 'ops-script', '--role', 'admin', '--expires', '20d'])
    expect(made.code).toBe(0)
    const token = made.stdout.trim()
    expect(token).toMatch(/^cst_[0-9a-f]{16}_/)
    expect(made.stderr).toContain('shown once')
    const me = await (await get('/api/v1/auth/me', token)).json()
    expect(me).toMatchObject({ username: 'token:ops-script', role: 'admin', kind: 'token' })

    const bad = await cli(['tokens', 'create', '--name', 'x', '--role', 'viewer', '--scopes', 'sources:write'])
    expect(bad.stderr).toContain('CITYSYNC_ERR_TOKEN_INVALID')

    expect((await cli(['users', 'lock', 'li.gong'])).stdout).toBe('li.gong: locked\n')
    const users = JSON.parse((await cli(['users', 'list', '--json'])).stdout) as { username: string; locked: boolean; role: string }[]
    expect(users.map((u) => [u.username, u.role, u.locked])).toEqual([['li.gong', 'operator', true], ['wang.admin', 'admin', false]])
    expect((await cli(['users', 'disable', 'wang.admin'])).stderr).toContain('CITYSYNC_ERR_USER_LAST_ADMIN')

    const review = await cli(['users', 'review', '--quarter', '2026Q4', '--format', 'csv'])
    expect(review.stdout).toContain('locked,user,li.gong,operator')
    expect(review.stdout).toMatch(/token-expiring,token,ops-script \([0-9a-f]{16}\),admin,/)

    const list = await cli(['tokens', 'list'])
    const id = /^([0-9a-f]{16})\s+ops-script/m.exec(list.stdout)![1]!
    expect((await cli(['tokens', 'revoke', id])).stdout).toBe(`${id} (ops-script): revoked\n`)
    expect((await get('/api/v1/auth/me', token)).status).toBe(401)

    const audit = await e.stores.metadata.knex('audit_log').where('actor_kind', 'cli').orderBy('seq').select('action', 'target', 'actor')
    expect(audit.map((a: { action: string; target: string }) => `${a.action} ${a.target}`)).toEqual([
      'cli users add wang.admin',
      'cli users add li.gong',
      `cli tokens create ${id}`,
      'cli users lock li.gong',
      `cli tokens revoke ${id}`,
    ])
    expect((audit[0] as { actor: string }).actor).toMatch(/^cli:/)
    expect(JSON.stringify(await e.stores.metadata.knex('audit_log').select('*'))).not.toContain(password)
  })
})
