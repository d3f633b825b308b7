import { type ChildProcess, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'

export const REPO = fileURLToPath(new URL('../../', import.meta.url))

export interface Spawned {
  child: ChildProcess
  /** Everything the process wrote so far (stdout and stderr). */
  output(): string
  /** Resolves with the first match of `re` in the output. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>
  /** SIGKILL: no cleanup, no flush; resolves once the process is gone. */
  kill9(): Promise<void>
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>
}

/** Runs `node --import tsx <script> ...args` from the repository root. */
export function spawnTs(script: string, args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): Spawned {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', script, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  const listeners = new Set<() => void>()
  const onData = (c: Buffer): void => {
    out += c.toString()
    if (out.length > 2_000_000) out = out.slice(-1_000_000)
    for (const l of listeners) l()
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {
    child,
    output: () => out,
    waitFor(re, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = re.exec(out)
          if (m) {
            cleanup()
            resolve(m)
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`${script} did not print ${re} within ${timeoutMs} ms; output:\n${out.slice(-4000)}`))
        }, timeoutMs)
        const onExit = (): void => {
          cleanup()
          reject(new Error(`${script} exited before printing ${re}; output:\n${out.slice(-4000)}`))
        }
        const cleanup = (): void => {
          clearTimeout(timer)
          listeners.delete(check)
          child.off('exit', onExit)
        }
        listeners.add(check)
        child.once('exit', onExit)
        check()
      })
    },
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      return exited
    },
  }
}

/** A chDB-backed ClickHouse HTTP endpoint in its own process (chDB binds one data directory per process). */
export async function startWarehouseProcess(dataDir: string, port = 0): Promise<{ url: string; proc: Spawned }> {
  const proc = spawnTs('infra/clickhouse/chdb-http.ts', ['--data', dataDir, '--port', String(port)])
  const m = await proc.waitFor(/ClickHouse HTTP interface at (http:\/\/\S+)/)
  return { url: m[1]!, proc }
}

/** An admin credential for spawned processes with no users yet: pass TEST_BOOTSTRAP_ENV in their env, ADMIN_HEADERS with requests. */
export const TEST_BOOTSTRAP_TOKEN = 'integration-test-bootstrap-token-0001'
export const TEST_BOOTSTRAP_ENV = { CITYSYNC_BOOTSTRAP_TOKEN: TEST_BOOTSTRAP_TOKEN } as const
export const ADMIN_HEADERS = { authorization: `Bearer ${TEST_BOOTSTRAP_TOKEN}` } as const

/** A TCP port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}

/** GET a JSON answer; undefined while the server is not up or answers an error. */
export async function getJson<T>(url: string, headers: Record<string, string> = {}): Promise<T | undefined> {
  try {
    const r = await fetch(url, { headers })
    return r.ok ? ((await r.json()) as T) : undefined
  } catch {
    return undefined
  }
}

/** Polls `fn` every 100 ms until it gives a value (neither undefined nor false). */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
