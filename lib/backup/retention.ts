// Retention: keep the N newest complete backups in a target folder. Only
// folders named like backups are ever considered; anything else in the
// folder is left alone.

import { existsSync } from 'node:fs'
import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { CitysyncError } from '../errors.ts'
import { BACKUP_NAME_RE, backupTime, MANIFEST_FILE } from './manifest.ts'

export interface BackupEntry {
  name: string
  /** From the name (UTC, second precision). */
  time: number
  /** Has its manifest: it finished. */
  complete: boolean
}

/** Unfinished folders of a backup that died are removed once they are this old. */
export const STALE_PARTIAL_MS = 24 * 3600_000
const PARTIAL_RE = /^\.(citysync-\d{8}T\d{6}(?:\d{3})?Z)\.partial$/

export function checkKeep(keep: number): number {
  if (!Number.isInteger(keep) || keep < 1) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`--keep must be a whole number of at least 1, got ${keep}`])
  return keep
}

/**
 * What to delete: complete backups beyond the `keep` newest, and unfinished
 * ones older than a day (a younger one may still be being written).
 */
export function retentionPlan(entries: readonly BackupEntry[], keep: number, now: number): string[] {
  checkKeep(keep)
  const complete = entries.filter((e) => e.complete).sort((a, b) => b.time - a.time || (a.name < b.name ? 1 : -1))
  const drop = complete.slice(keep).map((e) => e.name)
  for (const e of entries) if (!e.complete && now - e.time > STALE_PARTIAL_MS) drop.push(e.name)
  return drop
}

export async function listBackups(target: string): Promise<BackupEntry[]> {
  if (!existsSync(target)) return []
  const out: BackupEntry[] = []
  for (const d of await readdir(target, { withFileTypes: true })) {
    if (!d.isDirectory()) continue
    const partial = PARTIAL_RE.exec(d.name)
    const id = partial ? partial[1]! : d.name
    if (!partial && !BACKUP_NAME_RE.test(d.name)) continue
    const time = backupTime(id)
    if (time === undefined) continue
    out.push({ name: d.name, time, complete: !partial && existsSync(join(target, d.name, MANIFEST_FILE)) })
  }
  return out.sort((a, b) => a.time - b.time)
}

/** Applies the plan; returns the folders removed. */
export async function applyRetention(target: string, keep: number, now: number): Promise<string[]> {
  const drop = retentionPlan(await listBackups(target), keep, now)
  for (const name of drop) await rm(join(target, name), { recursive: true, force: true })
  return drop
}
