import { createRequire } from 'node:module'
import { basename, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import { type FastifyInstance } from 'fastify'

// The operator console: static ES modules, HTML and CSS from api/console/,
// served at / (the page) and /console/* (its modules and styles), with the
// ECharts bundle from the installed package. No build step: what is in the
// folder is what the browser gets. The files are public; every figure they
// show comes from the API, under the API's permissions.

export const CONSOLE_DIR = fileURLToPath(new URL('./console/', import.meta.url))
const ECHARTS_FILE = createRequire(import.meta.url).resolve('echarts/dist/echarts.min.js')

export async function consoleRoutes(app: FastifyInstance): Promise<void> {
  await app.register(fastifyStatic, {
    root: CONSOLE_DIR,
    prefix: '/console/',
    index: false,
    // Browsers revalidate (ETag) rather than run a stale console against a newer API.
    cacheControl: true,
    maxAge: 0,
  })

  app.get(
    '/',
    { schema: { summary: 'The operator console (HTML page; log in with a user account)', tags: ['console'], hide: true } },
    (_req, reply) => reply.header('cache-control', 'no-cache').sendFile('index.html', { cacheControl: false }),
  )

  app.get('/console', { schema: { summary: 'The operator console (redirects to /)', tags: ['console'], hide: true } }, (_req, reply) => reply.redirect('/', 301))

  app.get(
    '/console/vendor/echarts.min.js',
    { schema: { summary: "The ECharts bundle the console's charts use", tags: ['console'], hide: true } },
    (_req, reply) => reply.sendFile(basename(ECHARTS_FILE), dirname(ECHARTS_FILE)),
  )
}
