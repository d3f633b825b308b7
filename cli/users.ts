import { randomBytes } from 'node:crypto'
import { userInfo } from 'node:os'
import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import { type Command, Option } from 'commander'
import { tokenView, userView } from '../api/routes/users.ts'
import { type AuditEntry } from '../lib/auth/audit.ts'
import { isPermission, ROLES, type Role } from '../lib/auth/permissions.ts'
import { checkPasswordPolicy } from '../lib/auth/passwords.ts'
import { accountReview, accountReviewCsv } from '../lib/auth/review.ts'
import { AuthStore } from '../lib/auth/store.ts'
import { loadConfig } from '../lib/config.ts'
import { parseDuration } from '../lib/duration.ts'
import { CitysyncError } from '../lib/errors.ts'
import { loadKeys, openMetadataStore } from './embedded.ts'

// `citysync users …` and `citysync tokens …`: accounts and API tokens on the
// metadata store directly (the first admin is made this way). Every change is
// written to the audit log under `cli:<OS user>`.

interface Ctx {
  store: AuthStore
  actor: string
  audit: (action: string, target: string, detail?: Record<string, unknown>) => Promise<void>
}

async function withStore<T>(fn: (ctx: Ctx) => Promise<T>): Promise<T> {
  const cfg = loadConfig()
  const keys = await loadKeys(cfg)
  const metadata = await openMetadataStore(cfg, keys)
  try {
    const store = new AuthStore({ knex: metadata.knex, dialect: metadata.dialect, encKey: keys.encKey })
    const actor = `cli:${osUser()}`
    const audit = async (action: string, target: string, detail?: Record<string, unknown>): Promise<void> => {
      const entry: AuditEntry = { actor, actorKind: 'cli', role: null, action: `cli ${action}`, target, detail: detail ?? null }
      await store.audit.append(entry)
    }
    return await fn({ store, actor, audit })
  } finally {
    await metadata.close()
  }
}

function osUser(): string {
  try {
    return userInfo().username
  } catch {
    return process.env.USER ?? 'unknown'
  }
}

const out = (text: string): void => {
  process.stdout.write(text + '\n')
}

function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown): string => (v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : `${v as string | number | boolean}`)
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)))
  const line = (values: string[]): string => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(columns), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n')
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? ''
}

/** Reads a line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  process.stderr.write(question)
  const muted = new Writable({ write: (_chunk, _enc, done) => done() })
  const rl = createInterface({ input: process.stdin, output: muted, terminal: true })
  return new Promise((resolve) => {
    rl.question('', (answer) => {
      rl.close()
      process.stderr.write('\n')
      resolve(answer)
    })
  })
}

/** --password-stdin, else a prompt on a terminal, else a generated password (printed once). */
async function newPassword(username: string, fromStdin: boolean): Promise<{ password: string; generated: boolean }> {
  if (fromStdin) return { password: await readStdin(), generated: false }
  if (process.stdin.isTTY) {
    const first = await promptHidden(`password for ${username}: `)
    checkPasswordPolicy(first, username)
    const again = await promptHidden('again: ')
    if (first !== again) throw new CitysyncError('CITYSYNC_ERR_AUTH_PASSWORD_POLICY', ['the two entries differ'])
    return { password: first, generated: false }
  }
  return { password: randomBytes(18).toString('base64url'), generated: true }
}

function expiryOf(text: string): number {
  try {
    return Date.now() + parseDuration(text)
  } catch {
    const at = Date.parse(text)
    if (Number.isNaN(at)) throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', [`--expires ${JSON.stringify(text)}: a duration such as 90d or a date such as 2027-03-31`])
    return at
  }
}

const roleOption = (): Option => new Option('--role <role>', 'viewer, analyst, operator or admin').choices([...ROLES]).makeOptionMandatory()

export function registerUserCommands(program: Command): void {
  const users = program
    .command('users')
    .description('user accounts: add, list, lock, unlock, disable, reset the second factor; the quarterly account review')
    .addHelpText(
      'after',
      `
Roles: viewer (sources, freshness, reports), analyst (+ analytics and SQL), operator
(+ operate sources, alerts, incidents, county data), admin (everything, users, audit log).
The first admin is made here, or with CITYSYNC_BOOTSTRAP_TOKEN (docs/security.md).

Example:
  $ citysync users add wang.admin --role admin          # asks for the password twice
  $ printf '%s\\n' "$PASSWORD" | citysync users add li.gong --role operator --password-stdin
  $ citysync users list
  $ citysync users unlock li.gong
  $ citysync users review --quarter 2026Q4 --format csv > review-2026Q4.csv`,
    )

  users
    .command('add <name>')
    .description('add a user with a role; the password comes from stdin, a prompt, or is generated and printed once')
    .addOption(roleOption())
    .option('--password-stdin', 'read the password from the first line of stdin')
    .addHelpText('after', '\nPasswords need at least 10 characters.\n\nExample:\n  $ citysync users add li.gong --role operator')
    .action(async (name: string, opts: { role: Role; passwordStdin?: boolean }) => {
      const { password, generated } = await newPassword(name, opts.passwordStdin === true)
      await withStore(async ({ store, actor, audit }) => {
        const user = await store.createUser({ username: name, password, role: opts.role, createdBy: actor })
        await audit('users add', name, { after: userView(user) })
        out(`added ${user.username} (${user.role})`)
        if (generated) out(`password (shown once): ${password}`)
      })
    })

  users
    .command('list')
    .description('list users with role, state, second factor and last login')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  $ citysync users list --json')
    .action(async (opts: { json?: boolean }) => {
      await withStore(async ({ store }) => {
        const rows = (await store.listUsers()).map(userView)
        if (opts.json) return out(JSON.stringify(rows, null, 2))
        const view = rows.map((r) => ({ ...r, state: r.disabled === true ? 'disabled' : r.locked === true ? 'locked' : 'active', totp: r.totpEnabled === true ? 'on' : 'off' }))
        out(table(view, ['username', 'role', 'state', 'totp', 'lastLoginAt', 'createdBy']))
      })
    })

  const change = (command: string, description: string, example: string, patch: Parameters<AuthStore['updateUser']>[1], done: string): void => {
    users
      .command(`${command} <name>`)
      .description(description)
      .addHelpText('after', `\nExample:\n  $ citysync users ${command} ${example}`)
      .action(async (name: string) => {
        await withStore(async ({ store, audit }) => {
          const { before, after } = await store.updateUser(name, patch)
          await audit(`users ${command}`, name, { before: userView(before), after: userView(after) })
          out(`${name}: ${done}`)
        })
      })
  }
  change('lock', 'lock an account until it is unlocked (its sessions end)', 'zhao', { locked: true }, 'locked')
  change('unlock', 'unlock an account (after failed logins or a lock)', 'zhao', { locked: false }, 'unlocked')
  change('disable', 'disable an account (its sessions end; it stays in the review)', 'zhao', { disabled: true }, 'disabled')
  change('enable', 'enable a disabled account', 'zhao', { disabled: false }, 'enabled')
  change('reset-totp', 'turn the second factor off, e.g. after a lost phone (the user enrols again)', 'li.gong', { resetTotp: true }, 'second factor reset')

  users
    .command('role <name> <role>')
    .description("change a user's role (its sessions end)")
    .addHelpText('after', '\nExample:\n  $ citysync users role li.gong viewer')
    .action(async (name: string, role: string) => {
      if (!(ROLES as readonly string[]).includes(role)) throw new CitysyncError('CITYSYNC_ERR_USER_INVALID', [name, `unknown role ${JSON.stringify(role)} (${ROLES.join(', ')})`])
      await withStore(async ({ store, audit }) => {
        const { before, after } = await store.updateUser(name, { role: role as Role })
        await audit('users role', name, { before: userView(before), after: userView(after) })
        out(`${name}: ${before.role} → ${after.role}`)
      })
    })

  users
    .command('review')
    .description('the quarterly account review: privileged, inactive (90 days), locked and disabled accounts, missing second factors, tokens near expiry')
    .requiredOption('--quarter <YYYYQn>', 'the quarter, e.g. 2026Q4')
    .addOption(new Option('--format <format>', 'output format').choices(['json', 'csv']).default('json'))
    .option('--tz <zone>', 'zone the quarter is read in', 'Asia/Shanghai')
    .addHelpText('after', '\nExample:\n  $ citysync users review --quarter 2026Q4 --format csv > account-review-2026Q4.csv')
    .action(async (opts: { quarter: string; format: 'json' | 'csv'; tz: string }) => {
      await withStore(async ({ store }) => {
        const review = await accountReview(store, { quarter: opts.quarter, zone: opts.tz })
        process.stdout.write(opts.format === 'csv' ? accountReviewCsv(review) : JSON.stringify(review, null, 2) + '\n')
      })
    })

  const tokens = program
    .command('tokens')
    .description('API tokens for machines: create (the token is printed once), list, revoke')
    .addHelpText(
      'after',
      `
A token has a role and, optionally, scopes: permissions of that role it is narrowed to.
Only its SHA-256 is stored. Use it as: Authorization: Bearer cst_...

Example:
  $ citysync tokens create --name grafana --role viewer --scopes health:read --expires 90d
  $ citysync tokens list
  $ citysync tokens revoke 9f2c4e1a7b3d5c60`,
    )

  tokens
    .command('create')
    .description('create an API token and print it once')
    .requiredOption('--name <name>', 'what uses it, e.g. grafana')
    .addOption(roleOption())
    .option('--scopes <list>', 'comma-separated permissions of the role, e.g. health:read,sources:read')
    .option('--expires <when>', 'a duration (90d, 12h) or a date', '90d')
    .addHelpText('after', '\nExample:\n  $ citysync tokens create --name ci-deploy --role operator --scopes sources:read,sources:write --expires 30d')
    .action(async (opts: { name: string; role: Role; scopes?: string; expires: string }) => {
      const scopes = opts.scopes?.split(',').map((s) => s.trim()).filter((s) => s !== '')
      const unknown = scopes?.filter((s) => !isPermission(s)) ?? []
      if (unknown.length > 0) throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', [`unknown permission(s): ${unknown.join(', ')}`])
      await withStore(async ({ store, actor, audit }) => {
        const { token, record } = await store.createToken({ name: opts.name, role: opts.role, scopes, expiresAt: expiryOf(opts.expires), createdBy: actor })
        await audit('tokens create', record.id, { after: tokenView(record) })
        process.stderr.write(`created token ${record.id} (${record.name}, ${record.role}${record.scopes ? `, scopes ${record.scopes.join(',')}` : ''}), expires ${new Date(record.expiresAt).toISOString()}\n`)
        process.stderr.write('the token is shown once; store it now:\n')
        out(token)
      })
    })

  tokens
    .command('list')
    .description('list API tokens (never their secrets)')
    .option('--all', 'include revoked tokens')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  $ citysync tokens list --all')
    .action(async (opts: { all?: boolean; json?: boolean }) => {
      await withStore(async ({ store }) => {
        const rows = (await store.listTokens({ includeRevoked: opts.all === true })).map(tokenView)
        if (opts.json) return out(JSON.stringify(rows, null, 2))
        out(table(rows, ['id', 'name', 'role', 'scopes', 'expiresAt', 'lastUsedAt', 'revokedAt']))
      })
    })

  tokens
    .command('revoke <id>')
    .description('revoke an API token at once')
    .addHelpText('after', '\nExample:\n  $ citysync tokens revoke 9f2c4e1a7b3d5c60')
    .action(async (id: string) => {
      await withStore(async ({ store, actor, audit }) => {
        const before = await store.getToken(id)
        const after = await store.revokeToken(id, actor)
        await audit('tokens revoke', id, { before: tokenView(before), after: tokenView(after) })
        out(`${id} (${after.name}): revoked`)
      })
    })

}
