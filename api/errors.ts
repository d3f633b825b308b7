import { type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify'
import { CitysyncError, isCitysyncError } from '../lib/errors.ts'
import { jsonErrorText } from '../lib/plate-redaction.ts'

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
    const known = fromFastify(err, req)
    if (known !== undefined) return reply.status(known.status).send({ code: known.code, message: known.message })
    const status = err.statusCode ?? 500
    if (status >= 500) req.log.error({ err }, 'request failed')
    return reply.status(status).send({ code: status >= 500 ? 'CITYSYNC_ERR_API_INTERNAL' : `CITYSYNC_ERR_API_${err.code ?? 'REQUEST'}`, message: status >= 500 ? 'internal error' : err.message })
  })
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ code: 'CITYSYNC_ERR_API_NOT_FOUND', message: `route ${req.method} ${req.url} not found` })
  })
}

const DEFAULT_BODY_LIMIT = 1024 * 1024

/** Fastify's own request errors, under stable codes. */
function fromFastify(err: FastifyError, req: FastifyRequest): CitysyncError | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new CitysyncError('CITYSYNC_ERR_API_BODY_TOO_LARGE', [req.routeOptions.bodyLimit ?? DEFAULT_BODY_LIMIT])
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new CitysyncError('CITYSYNC_ERR_API_MEDIA_TYPE', [JSON.stringify(req.headers['content-type'] ?? '')])
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new CitysyncError('CITYSYNC_ERR_API_BODY_INVALID', [err.message])
  }
  // The JSON parser's own errors carry no code: a SyntaxError with status 400.
  if (err instanceof SyntaxError && err.statusCode === 400) return new CitysyncError('CITYSYNC_ERR_API_BODY_INVALID', [`not JSON: ${jsonErrorText(err)}`])
  return undefined
}
