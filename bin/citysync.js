#!/usr/bin/env node
// Runs the compiled CLI when built (`npm run build`), the TypeScript sources otherwise.
import { existsSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'

const built = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))
if (existsSync(built)) {
  await import(pathToFileURL(built).href)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import(new URL('../cli/main.ts', import.meta.url).href)
}
