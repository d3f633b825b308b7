import { type FastifyError, type FastifyInstance } from 'fastify'
import { isCitysyncError } from '../lib/errors.ts'

/** Every error leaves the API as `{ code, message }` with a stable code. */
export const ERROR_SCHEMA = {
  $id: 'Error',
  type: 'object',
  required: ['code', 'message'],
  properties: { code: { type: 'string', examples: ['CITYSYNC_ERR_SOURCE_NOT_FOUND'] }, message: { type: 'string' } },
} as const

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (isCitysyncError(err)) {
      if (err.status >= 500) req.log.error({ err }, err.message)
      return reply.status(err.status).send({ code: err.code, message: err.message })
    }
    if (err.validation) {
      return reply.status(400).send({ code: 'CITYSYNC_ERR_API_VALIDATION', message: err.message })
    }
    const status = err.statusCode ?? 500
    if (status >= 500) req.log.error({ err }, 'request failed')
    return reply.status(status).send({ code: status >= 500 ? 'CITYSYNC_ERR_API_INTERNAL' : `CITYSYNC_ERR_API_${err.code ?? 'REQUEST'}`, message: status >= 500 ? 'internal error' : err.message })
  })
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ code: 'CITYSYNC_ERR_API_NOT_FOUND', message: `route ${req.method} ${req.url} not found` })
  })
}
