// Prometheus gauges of the backups, read at scrape time from the backup
// target (CITYSYNC_BACKUP_DIR): `citysync backup` writes a manifest into
// every finished backup, so the newest manifest says when the last backup
// succeeded, how long it took and how big it is. A process that cannot see
// the target (another host) shows no backup: mount the target there too, or
// alert on the backup host (docs/operations.md).

import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { Gauge, type Registry } from 'prom-client'
import { manifestFiles, MANIFEST_FILE, parseManifest, type Manifest } from './manifest.ts'
import { listBackups } from './retention.ts'

interface Latest {
  kept: number
  manifest: Manifest | undefined
}

/** A scrape reads the folder at most this often. */
const CACHE_MS = 5_000

export class BackupMetrics {
  readonly dir: string
  #cached: { at: number; value: Promise<Latest> } | undefined
  #manifest: { id: string; manifest: Manifest } | undefined

  constructor(o: { registry: Registry; dir: string }) {
    this.dir = resolve(o.dir)
    const registers = [o.registry]
    const gauge = (name: string, help: string, pick: (l: Latest) => number | undefined): void => {
      const g: Gauge = new Gauge({
        name,
        help,
        registers,
        collect: async () => {
          g.reset()
          const v = pick(await this.latest())
          if (v !== undefined) g.set(v)
        },
      })
    }
    gauge('citysync_backup_last_success_timestamp_seconds', 'When the newest complete backup in the backup target finished (0: none there)', (l) => (l.manifest ? l.manifest.finishedAt / 1000 : 0))
    gauge('citysync_backup_last_duration_seconds', 'How long the newest complete backup took', (l) => (l.manifest ? (l.manifest.finishedAt - l.manifest.startedAt) / 1000 : undefined))
    gauge('citysync_backup_last_size_bytes', 'Size of the newest complete backup (metadata dump and warehouse files)', (l) => (l.manifest ? manifestFiles(l.manifest).reduce((n, f) => n + f.bytes, 0) : undefined))
    gauge('citysync_backup_last_warehouse_rows', 'Warehouse rows in the newest complete backup', (l) => (l.manifest ? l.manifest.warehouse.tables.reduce((n, t) => n + t.rows, 0) : undefined))
    gauge('citysync_backups_kept', 'Complete backups in the backup target', (l) => l.kept)
  }

  /** The newest complete backup's manifest (read once per backup) and how many complete backups there are. */
  latest(now = Date.now()): Promise<Latest> {
    if (this.#cached !== undefined && now - this.#cached.at < CACHE_MS) return this.#cached.value
    const value = this.#read()
    this.#cached = { at: now, value }
    return value
  }

  async #read(): Promise<Latest> {
    const complete = (await listBackups(this.dir).catch(() => [])).filter((b) => b.complete)
    const newest = complete[complete.length - 1]
    if (newest === undefined) return { kept: 0, manifest: undefined }
    if (this.#manifest?.id !== newest.name) {
      try {
        const path = join(this.dir, newest.name, MANIFEST_FILE)
        this.#manifest = { id: newest.name, manifest: parseManifest(await readFile(path, 'utf8'), path) }
      } catch {
        // Unreadable: shown as no backup, which is what it is worth.
        return { kept: complete.length, manifest: undefined }
      }
    }
    return { kept: complete.length, manifest: this.#manifest.manifest }
  }
}
