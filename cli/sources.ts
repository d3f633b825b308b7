import { type Command } from 'commander'
import { configSchemaFor } from '../connectors/registry.ts'
import { loadConfig } from '../lib/config.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { loadKeys, openMetadataStore } from './embedded.ts'
import { parseSourceFile, validateSourceConfig } from '../lib/source-config.ts'
import { landedFigures, composeStatus } from '../quality/source-status.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'

async function withMetadata<T>(fn: (m: Metadata) => Promise<T>): Promise<T> {
  const cfg = loadConfig()
  const m = await openMetadataStore(cfg, await loadKeys(cfg))
  try {
    return await fn(m)
  } finally {
    await m.close()
  }
}

const out = (text: string): void => {
  process.stdout.write(text + '\n')
}

export function registerSourceCommands(program: Command): void {
  const sources = program
    .command('sources')
    .description('add, inspect and operate data sources (one connector per source)')
    .addHelpText(
      'after',
      `
Example:
  $ citysync sources add examples/sources/hengqin-parking.yaml
  $ citysync sources deploy hengqin-parking
  $ citysync sources show hengqin-parking
  $ citysync sources pause hengqin-parking     # e.g. during the vendor's maintenance`,
    )

  sources
    .command('add <file>')
    .description('register a source from a YAML or JSON file (added paused; deploy it to start)')
    .option('--deploy', 'deploy it right away')
    .action(async (file: string, opts: { deploy?: boolean }) => {
      const cfg = validateSourceConfig(parseSourceFile(file), configSchemaFor)
      await withMetadata(async (m) => {
        await m.sources.add(cfg)
        if (opts.deploy) await m.sources.setDesiredState(cfg.id, 'deployed', 'cli')
      })
      out(`added ${cfg.id} (${cfg.kind})${opts.deploy ? ', deployed' : '; run `citysync sources deploy ' + cfg.id + '` to start it'}`)
    })

  sources
    .command('list')
    .description('list sources')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await withMetadata((m) => m.sources.list())
      if (opts.json) return out(JSON.stringify(list.map((s) => ({ id: s.id, kind: s.kind, name: s.name, desiredState: s.desiredState })), null, 2))
      if (list.length === 0) return out('no sources; add one with `citysync sources add FILE`')
      for (const s of list) out(`${s.id.padEnd(28)} ${s.kind.padEnd(16)} ${s.desiredState.padEnd(9)} ${s.name}`)
    })

  sources
    .command('show <id>')
    .description("a source's configuration (secrets hidden), status and recent history")
    .action(async (id: string) => {
      const cfg = loadConfig()
      await withMetadata(async (m) => {
        const s = await m.sources.get(id)
        const st = await m.connectorState.get(id)
        const wh = await openWarehouse({ clickhouseUrl: cfg.clickhouseUrl, dataDir: cfg.dataDir })
        try {
          const landed = (await landedFigures(wh, [id])).get(id)
          const status = composeStatus(
            { desiredState: s.desiredState, runState: st?.runState ?? null, checkpointAt: st?.checkpointAt ?? null, lastError: st?.lastError ?? null },
            landed,
          )
          const { config: _hidden, ...rest } = s
          out(JSON.stringify({ ...rest, cursor: st?.cursor ?? null, status, history: await m.sources.history(id, 10) }, null, 2))
        } finally {
          await wh.close()
        }
      })
    })

  for (const [verb, state] of [
    ['deploy', 'deployed'],
    ['resume', 'deployed'],
    ['pause', 'paused'],
  ] as const) {
    sources
      .command(`${verb} <id>`)
      .description(`${verb} a source (running processes pick it up within seconds)`)
      .action(async (id: string) => {
        await withMetadata((m) => m.sources.setDesiredState(id, state, 'cli'))
        out(`${id}: ${state}`)
      })
  }

  sources
    .command('restart <id>')
    .description('stop and start the connector of a deployed source')
    .action(async (id: string) => {
      // Bumps the source's version: every process running it restarts its runner.
      await withMetadata((m) => m.sources.restart(id, 'cli'))
      out(`${id}: restarting`)
    })

  sources
    .command('remove <id>')
    .description('remove a source and its cursor (landed data stays in the warehouse)')
    .action(async (id: string) => {
      await withMetadata((m) => m.sources.remove(id))
      out(`${id}: removed`)
    })
}
