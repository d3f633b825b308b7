// `citysync backup` and `citysync restore`: see lib/backup/ and docs/operations.md.

import { type Command, Option } from 'commander'
import { loadConfig } from '../lib/config.ts'
import { createBackup, DEFAULT_KEEP } from '../lib/backup/backup.ts'
import { restoreBackup } from '../lib/backup/restore.ts'
import { createLogger, loadKeys, VERSION } from './embedded.ts'

const out = (text: string): void => {
  process.stdout.write(text + '\n')
}

function mb(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`
}

export function registerBackupCommands(program: Command): void {
  program
    .command('backup')
    .description('write a consistent, timestamped backup of the metadata store and the warehouse, with a manifest; then apply retention')
    .option('--to <dir>', 'target folder (keep it off this machine: a mount of another host); default $CITYSYNC_BACKUP_DIR or ./backups')
    .addOption(new Option('--keep <n>', `complete backups to keep in the target folder (default $CITYSYNC_BACKUP_KEEP or ${DEFAULT_KEEP})`).argParser((v) => Number(v)))
    .option('--json', 'print the manifest as JSON')
    .addHelpText(
      'after',
      `
The metadata store is copied first (SQLite online backup, or pg_dump of DATABASE_URL), then each
warehouse table as a ClickHouse Native file. The master key is NOT in the backup: keep it elsewhere.
Embedded mode: chDB allows one process per data directory, so run this while \`citysync start\` is
stopped (docs/operations.md has a systemd timer that does so).

Example:
  $ citysync backup --to /mnt/backup-host/citysync --keep 14
  $ citysync restore /mnt/backup-host/citysync/citysync-20261121T023000Z --verify-only`,
    )
    .action(async (opts: { to?: string; keep?: number; json?: boolean }) => {
      const cfg = loadConfig()
      const log = createLogger(process.env.LOG_LEVEL ?? 'warn')
      const keepEnv = process.env.CITYSYNC_BACKUP_KEEP
      const r = await createBackup({
        stores: cfg,
        to: opts.to ?? process.env.CITYSYNC_BACKUP_DIR ?? './backups',
        keep: opts.keep ?? (keepEnv ? Number(keepEnv) : DEFAULT_KEEP),
        keys: await loadKeys(cfg),
        version: VERSION,
        log,
      })
      if (opts.json) {
        out(JSON.stringify({ dir: r.dir, removed: r.removed, manifest: r.manifest }, null, 2))
        return
      }
      const m = r.manifest
      const whBytes = m.warehouse.tables.reduce((s, t) => s + t.file.bytes, 0)
      const whRows = m.warehouse.tables.reduce((s, t) => s + t.rows, 0)
      out(`backup ${r.dir}`)
      out(`  metadata  ${m.metadata.dialect}, ${m.metadata.tables.length} tables, ${mb(m.metadata.file.bytes)}`)
      out(`  warehouse ${m.warehouse.tables.length} tables, ${whRows} rows, ${mb(whBytes)}`)
      for (const t of m.warehouse.tables) if (t.rows > 0) out(`    ${t.name.padEnd(22)} ${String(t.rows).padStart(12)} rows  ${mb(t.file.bytes)}`)
      out(`  key       ${m.keyFingerprint} (keep the master key apart from the backups)`)
      out(`  took      ${((m.finishedAt - m.startedAt) / 1000).toFixed(1)} s`)
      if (r.removed.length > 0) out(`  removed   ${r.removed.join(', ')}`)
    })

  program
    .command('restore <backup>')
    .description('restore a backup into an empty data directory / database and verify rows and checksums against its manifest')
    .option('--verify-only', 'check the backup (files, SHA-256, rows and content hashes, key) without restoring it')
    .option('--key-file <file>', 'the master key the backup was made with (hex, as keys/master.key), if CITYSYNC_MASTER_KEY is not set')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Targets come from the environment, as for every command: CITYSYNC_DATA_DIR (embedded chDB and
SQLite), CLICKHOUSE_URL, DATABASE_URL. They must be empty. After a restore, start citysync as usual:
connectors resume from the restored cursors and the warehouse drops what it already holds.

Example:
  $ CITYSYNC_DATA_DIR=/var/lib/citysync citysync restore /mnt/backup-host/citysync/citysync-20261121T023000Z --key-file /root/citysync-master.key`,
    )
    .action(async (backup: string, opts: { verifyOnly?: boolean; keyFile?: string; json?: boolean }) => {
      const cfg = loadConfig()
      const r = await restoreBackup({
        stores: cfg,
        backup,
        verifyOnly: opts.verifyOnly === true,
        env: process.env,
        keyFile: opts.keyFile,
        log: createLogger(process.env.LOG_LEVEL ?? 'warn'),
      })
      if (opts.json) {
        out(JSON.stringify({ id: r.manifest.id, restored: r.restored, files: r.files, tables: r.tables, keySource: r.keySource, ms: r.ms }, null, 2))
        return
      }
      const rows = (part: string): number => r.tables.filter((t) => t.part === part).reduce((s, t) => s + t.rows, 0)
      out(`${r.restored ? 'restored' : 'verified'} ${r.manifest.id} (taken ${new Date(r.manifest.startedAt).toISOString()} on ${r.manifest.host})`)
      out(`  files     ${r.files} match their SHA-256`)
      out(`  metadata  ${r.manifest.metadata.tables.length} tables, ${rows('metadata')} rows${r.tables.some((t) => t.part === 'metadata') ? ' match' : ' (dump archive readable; rows are counted on restore)'}`)
      out(`  warehouse ${r.manifest.warehouse.tables.length} tables, ${rows('warehouse')} rows match counts and content hashes`)
      out(`  key       ${r.keySource ? `matches ${r.manifest.keyFingerprint} (${r.keySource})` : `not checked: give CITYSYNC_MASTER_KEY or --key-file (backup made with ${r.manifest.keyFingerprint})`}`)
      out(`  took      ${(r.ms / 1000).toFixed(1)} s`)
    })
}
