import { type Command, Option } from 'commander'
import {
  type SourceOps,
  addSource,
  checkSource,
  deploySource,
  fieldErrors,
  pauseSource,
  removeSource,
  resetSourceCursor,
  restartSource,
  resumeSource,
  sourceStatuses,
  sourceView,
  updateSource,
} from '../api/routes/sources.ts'
import { CitysyncError, isCitysyncError } from '../lib/errors.ts'
import { loadConfig } from '../lib/config.ts'
import { parseSourceFile } from '../lib/source-config.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { createLogger, loadKeys, openMetadataStore } from './embedded.ts'

// The same operations as the REST API (api/routes/sources.ts), on the stores
// directly: processes that run the connectors pick changes up within seconds.

async function withOps<T>(fn: (ops: SourceOps) => Promise<T>): Promise<T> {
  const cfg = loadConfig()
  const metadata = await openMetadataStore(cfg, await loadKeys(cfg))
  try {
    return await fn({ metadata, log: createLogger(process.env.LOG_LEVEL ?? 'warn'), actor: 'cli' })
  } finally {
    await metadata.close()
  }
}

const out = (text: string): void => {
  process.stdout.write(text + '\n')
}

/** A definition file's problems, one field per line, under the error's code. */
async function withFileErrors<T>(file: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (isCitysyncError(err, 'CITYSYNC_ERR_CONFIG_INVALID') || isCitysyncError(err, 'CITYSYNC_ERR_SOURCE_KIND_UNKNOWN')) {
      const lines = fieldErrors(err).map((e) => `  ${e.path}: ${e.message}`)
      throw new CitysyncError(err.code, [`${file}:\n${lines.join('\n')}`], { cause: err })
    }
    throw err
  }
}

const forceOption = (what: string): Option => new Option('--force', what)

export function registerSourceCommands(program: Command): void {
  const sources = program
    .command('sources')
    .description('add, inspect and operate data sources (one connector per source)')
    .addHelpText(
      'after',
      `
States: provisioned (added, never deployed), paused, idle / running / backoff (deployed),
failed (see lastError), stopped. The same operations are on the REST API under /api/v1/sources.

Example:
  $ citysync sources add examples/sources/hengqin-parking.yaml
  $ citysync sources check hengqin-parking     # reach the upstream with the stored config
  $ citysync sources deploy hengqin-parking    # runs the check first; --force skips it
  $ citysync sources show hengqin-parking
  $ citysync sources pause hengqin-parking     # e.g. during the vendor's maintenance
  $ citysync sources cursor hengqin-parking --reset
  $ citysync sources resume hengqin-parking`,
    )

  sources
    .command('add <file>')
    .description("register a source from a YAML or JSON file, validated against its connector's schema (added paused)")
    .option('--deploy', 'check and deploy it right away')
    .addOption(forceOption('with --deploy: deploy even if the check fails'))
    .addHelpText('after', '\nExample:\n  $ citysync sources add examples/sources/hengqin-parking.yaml --deploy')
    .action(async (file: string, opts: { deploy?: boolean; force?: boolean }) => {
      await withOps(async (ops) => {
        const added = await withFileErrors(file, async () => addSource(ops, parseSourceFile(file)))
        out(`added ${added.id} (${added.kind}), paused`)
        if (opts.deploy) {
          const check = await deploySource(ops, added.id, opts.force === true)
          out(`${added.id}: ${check ? `check passed (${check.message}), ` : ''}deployed`)
        } else {
          out(`run \`citysync sources deploy ${added.id}\` to start it`)
        }
      })
    })

  sources
    .command('update <file>')
    .description('replace a source\'s definition (same id and kind); bumps its version, a running connector restarts on it')
    .option('--expect-version <n>', 'refuse if the source is no longer at this version', (v) => Number.parseInt(v, 10))
    .addHelpText('after', '\nSecrets written as "******" keep their stored value.\n\nExample:\n  $ citysync sources update hengqin-parking.yaml --expect-version 3')
    .action(async (file: string, opts: { expectVersion?: number }) => {
      await withOps(async (ops) => {
        const raw = parseSourceFile(file)
        const id = (raw as { id?: unknown } | null)?.id
        if (typeof id !== 'string') throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${file}: id is required`])
        const updated = await withFileErrors(file, async () => updateSource(ops, id, raw, opts.expectVersion))
        out(`${updated.id}: updated to version ${updated.version}`)
      })
    })

  sources
    .command('list')
    .description('list sources with their state')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  $ citysync sources list --json')
    .action(async (opts: { json?: boolean }) => {
      await withOps(async (ops) => {
        const list = await ops.metadata.sources.list()
        // Rows landed come from the warehouse: see `show`.
        const status = await sourceStatuses(ops.metadata, undefined, list)
        const rows = list.map((s) => ({ id: s.id, kind: s.kind, name: s.name, state: status.get(s.id)!.state, version: s.version }))
        if (opts.json) return out(JSON.stringify(rows, null, 2))
        if (rows.length === 0) return out('no sources; add one with `citysync sources add FILE`')
        for (const r of rows) out(`${r.id.padEnd(28)} ${r.kind.padEnd(16)} ${r.state.padEnd(12)} ${r.name}`)
      })
    })

  sources
    .command('show <id>')
    .description("a source's definition (secrets hidden), status, cursor and recent history")
    .addHelpText('after', '\nExample:\n  $ citysync sources show hengqin-parking')
    .action(async (id: string) => {
      const cfg = loadConfig()
      await withOps(async (ops) => {
        const source = await ops.metadata.sources.get(id)
        const state = await ops.metadata.connectorState.get(id)
        const wh = await openWarehouse({ clickhouseUrl: cfg.clickhouseUrl, dataDir: cfg.dataDir })
        try {
          const status = (await sourceStatuses(ops.metadata, wh, [source])).get(id)!
          const history = await ops.metadata.sources.history(id, 10)
          out(JSON.stringify({ ...sourceView(source, status), cursor: state.cursor ?? null, history }, null, 2))
        } finally {
          await wh.close()
        }
      })
    })

  sources
    .command('check <id>')
    .description("run the connector's check with the stored config (exit code 1 if it fails)")
    .addHelpText('after', '\nExample:\n  $ citysync sources check hengqin-parking\n  ok: 5 car parks found')
    .action(async (id: string) => {
      await withOps(async (ops) => {
        const result = await checkSource(ops, await ops.metadata.sources.get(id))
        out(`${result.ok ? 'ok' : 'failed'}: ${result.message}`)
        if (result.details !== undefined) out(JSON.stringify(result.details, null, 2))
        if (!result.ok) process.exitCode = 1
      })
    })

  sources
    .command('deploy <id>')
    .description("check, then deploy a source (running processes pick it up within seconds)")
    .addOption(forceOption('deploy even if the check fails'))
    .addHelpText('after', '\nExample:\n  $ citysync sources deploy hengqin-parking\n  $ citysync sources deploy hengqin-parking --force   # upstream down for now, deploy anyway')
    .action(async (id: string, opts: { force?: boolean }) => {
      await withOps(async (ops) => {
        const check = await deploySource(ops, id, opts.force === true)
        out(`${id}: ${check ? `check passed (${check.message}), ` : 'check skipped, '}deployed`)
      })
    })

  for (const [verb, run, what] of [
    ['pause', pauseSource, 'paused'],
    ['resume', resumeSource, 'deployed'],
  ] as const) {
    sources
      .command(`${verb} <id>`)
      .description(`${verb} a source (running processes pick it up within seconds)`)
      .addHelpText('after', `\nExample:\n  $ citysync sources ${verb} hengqin-parking`)
      .action(async (id: string) => {
        await withOps((ops) => run(ops, id))
        out(`${id}: ${what}`)
      })
  }

  sources
    .command('restart <id>')
    .description('stop and start the connector of a deployed source (from its saved cursor)')
    .addHelpText('after', '\nExample:\n  $ citysync sources restart hengqin-parking')
    .action(async (id: string) => {
      await withOps((ops) => restartSource(ops, id))
      out(`${id}: restarting`)
    })

  sources
    .command('remove <id>')
    .description('remove a paused source with its cursor and history (landed data stays in the warehouse)')
    .addOption(forceOption('remove it even while deployed (it is paused first)'))
    .addHelpText('after', '\nExample:\n  $ citysync sources pause hengqin-parking && citysync sources remove hengqin-parking')
    .action(async (id: string, opts: { force?: boolean }) => {
      await withOps((ops) => removeSource(ops, id, opts.force === true))
      out(`${id}: removed`)
    })

  sources
    .command('cursor <id>')
    .description("show a source's saved cursor; --reset or --set change it while the source is paused")
    .option('--reset', 'the next read starts from the beginning (what landed already is deduplicated)')
    .option('--set <json>', 'set the cursor to this value, e.g. to read a stretch again')
    .addOption(forceOption('change it even though its connector still looks busy (only if no process runs it)'))
    .addHelpText(
      'after',
      `\nExample:\n  $ citysync sources cursor hengqin-parking\n  $ citysync sources cursor hengqin-parking --reset\n  $ citysync sources cursor hengqin-parking --set '{"in": 17000, "out": 16800, "space": 5000}'`,
    )
    .action(async (id: string, opts: { reset?: boolean; set?: string; force?: boolean }) => {
      if (opts.reset && opts.set !== undefined) throw new CitysyncError('CITYSYNC_ERR_SOURCE_CURSOR_INVALID', [id, 'give --reset or --set, not both'])
      let value: unknown
      if (opts.set !== undefined) {
        try {
          value = JSON.parse(opts.set) as unknown
        } catch {
          throw new CitysyncError('CITYSYNC_ERR_SOURCE_CURSOR_INVALID', [id, '--set is not JSON'])
        }
      }
      await withOps(async (ops) => {
        if (opts.reset || value !== undefined) {
          const change = await resetSourceCursor(ops, id, { cursor: value, force: opts.force === true })
          out(`${id}: cursor ${value === undefined ? 'reset' : 'set'} (was ${JSON.stringify(change.previousCursor)})`)
          return
        }
        const state = await ops.metadata.connectorState.get(id)
        out(JSON.stringify({ cursor: state.cursor ?? null, checkpointAt: state.checkpointAt === null ? null : new Date(state.checkpointAt).toISOString() }, null, 2))
      })
    })
}
