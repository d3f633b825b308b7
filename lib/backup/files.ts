import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { chmod, open, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type FileEntry } from './manifest.ts'

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Records a file of the backup; backups hold protected personal data, so group-readable at most. */
export async function fileEntry(root: string, path: string): Promise<FileEntry> {
  const abs = join(root, path)
  // A ClickHouse server writes table files as its own user; those keep the server's mode.
  await chmod(abs, 0o640).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPERM') throw err
  })
  const [st, sha256] = await Promise.all([stat(abs), sha256File(abs)])
  return { path, bytes: st.size, sha256 }
}

/** Flushes a file or a directory entry to disk. */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** Written aside and renamed into place: readers see the old file or the whole new one. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`
  await writeFile(tmp, text, { mode: 0o640 })
  await fsyncPath(tmp)
  await rename(tmp, file)
}
