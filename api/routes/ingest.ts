import { createHmac, timingSafeEqual } from 'node:crypto'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { type FastifyError, type FastifyInstance, type FastifySchemaCompiler } from 'fastify'
import { connectorFor } from '../../connectors/registry.ts'
import { isPushConnector, type PushAlgorithm, type PushAuth, type PushItem } from '../../connectors/parking-lots/push.ts'
import { type JsonSchema } from '../../connectors/sdk/connector.ts'
import { type Clock } from '../../lib/clock.ts'
import { CitysyncError, isCitysyncError } from '../../lib/errors.ts'
import { jsonErrorText } from '../../lib/plate-redaction.ts'
import { type Bus } from '../../pipelines/bus/bus.ts'
import { deriveEventId, type PlateProtector } from '../../pipelines/normalise.ts'
import { Publisher } from '../../pipelines/publisher.ts'
import { type SchemaCatalogue } from '../../schemas/catalogue.ts'
import { type EventName } from '../../schemas/events.ts'
import { type ApiDeps } from '../app.ts'
import { hygieneFromEnv, ingestRateLimit } from '../hygiene.ts'

// Push ingest: POST /api/v1/ingest/:sourceId.
//
// Signature contract (wire):
//   X-Citysync-Timestamp: epoch milliseconds, or epoch seconds (values below 10^11)
//   X-Citysync-Signature: hex( HMAC(secret, timestamp + "\n" + rawBody) ), optionally
//                         prefixed "sha256=" or "sm3=" (which must then match the algorithm)
//   HMAC is HMAC-SHA256 or HMAC-SM3, as the source's config says; `timestamp`
//   is the header's text exactly as sent, rawBody the request body's bytes.
// A timestamp further than the source's replay window (default 5 min) from now,
// either way, is refused, so a captured request cannot be replayed later; a
// replay inside the window is harmless, since event ids are derived from the
// records and the pipeline drops repeats.
//
// A batch is acknowledged only once the bus holds it (Bus.publish resolved: on
// the in-process bus, once it has landed), so a 200 means it will be in ClickHouse.

export const HEADER_TIMESTAMP = 'x-citysync-timestamp'
export const HEADER_SIGNATURE = 'x-citysync-signature'
/** Largest push body accepted, in bytes. */
export const INGEST_BODY_LIMIT = 1024 * 1024

/** What the route needs to publish: the same bus and catalogue the connectors use. */
export interface IngestDeps {
  bus: Bus
  catalogue: SchemaCatalogue
  protectPlate: PlateProtector
  clock: Clock
  /** How long a push waits for the bus to take its batch before answering 503 (default 30 s). */
  ackTimeoutMs?: number
}

const HMAC_OF: Record<PushAlgorithm, { digest: string; prefix: string }> = {
  'hmac-sha256': { digest: 'sha256', prefix: 'sha256=' },
  'hmac-sm3': { digest: 'sm3', prefix: 'sm3=' },
}

/** The signature a pusher sends (hex, no prefix). */
export function signPush(algorithm: PushAlgorithm, secret: string, timestamp: string, rawBody: Buffer | string): string {
  return createHmac(HMAC_OF[algorithm].digest, secret).update(timestamp).update('\n').update(rawBody).digest('hex')
}

/** Epoch ms from the timestamp header; null when it is not a plain positive integer. */
export function parsePushTimestamp(text: string | undefined): number | null {
  if (text === undefined || !/^\d{1,16}$/.test(text.trim())) return null
  const n = Number(text.trim())
  if (!Number.isSafeInteger(n) || n <= 0) return null
  return n < 1e11 ? n * 1000 : n
}

export interface PushRequest {
  timestamp: string | undefined
  signature: string | undefined
  rawBody: Buffer
  now: number
}

/**
 * Throws CITYSYNC_ERR_INGEST_TIMESTAMP or CITYSYNC_ERR_INGEST_SIGNATURE (both
 * 401) unless the request is signed with one of the source's secrets within
 * its replay window. The comparison takes the same time wherever the digests differ.
 */
export function verifyPush(auth: PushAuth, req: PushRequest): void {
  const at = parsePushTimestamp(req.timestamp)
  if (at === null) throw new CitysyncError('CITYSYNC_ERR_INGEST_TIMESTAMP', [`${HEADER_TIMESTAMP} is missing or not epoch seconds or milliseconds`])
  const skew = at - req.now
  if (Math.abs(skew) > auth.replayWindowMs) {
    throw new CitysyncError('CITYSYNC_ERR_INGEST_TIMESTAMP', [
      `timestamp is ${Math.round(Math.abs(skew) / 1000)} s ${skew < 0 ? 'old' : 'ahead'}, outside the replay window of ${auth.replayWindowMs / 1000} s`,
    ])
  }
  const { digest, prefix } = HMAC_OF[auth.algorithm]
  let text = req.signature?.trim().toLowerCase() ?? ''
  if (/^[a-z0-9]+=/.test(text)) {
    if (!text.startsWith(prefix)) throw new CitysyncError('CITYSYNC_ERR_INGEST_SIGNATURE', [`this source expects ${auth.algorithm} signatures`])
    text = text.slice(prefix.length)
  }
  if (!/^[0-9a-f]+$/.test(text)) throw new CitysyncError('CITYSYNC_ERR_INGEST_SIGNATURE', [`${HEADER_SIGNATURE} is missing or not hex`])
  const given = Buffer.from(text, 'hex')
  let match = false
  for (const secret of auth.secrets) {
    const expected = createHmac(digest, secret).update(req.timestamp!).update('\n').update(req.rawBody).digest()
    // timingSafeEqual needs equal lengths; the length of a digest is no secret.
    if (given.length === expected.length && timingSafeEqual(given, expected)) match = true
  }
  if (!match) throw new CitysyncError('CITYSYNC_ERR_INGEST_SIGNATURE', ['signature does not match'])
}

export type ItemAck =
  | { index: number; status: 'accepted'; eventId: string }
  | { index: number; status: 'rejected'; code: string; reason: string }

export interface PushAck {
  sourceId: string
  accepted: number
  rejected: number
  items: ItemAck[]
}

/** Remembers why the last record it was given was rejected (schema validation happens inside record()). */
class AckingPublisher extends Publisher {
  lastRejection: { code: string; reason: string } | undefined

  override reject(stage: string, code: string, reason: string, family: EventName | null, raw: string): void {
    this.lastRejection = { code, reason }
    super.reject(stage, code, reason, family, raw)
  }
}

async function acknowledged(flush: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      flush,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new CitysyncError('CITYSYNC_ERR_INGEST_UNACKED', [timeoutMs])), timeoutMs)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

const ACK_EXAMPLE: PushAck = {
  sourceId: 'hengqin-push',
  accepted: 2,
  rejected: 1,
  items: [
    { index: 0, status: 'accepted', eventId: '5f0c6d1e9b8a7c6d5e4f3a2b1c0d9e8f' },
    { index: 1, status: 'accepted', eventId: 'a1b2c3d4e5f60718293a4b5c6d7e8f90' },
    { index: 2, status: 'rejected', code: 'missing_field', reason: 'record 2 (entry seq 3): missing field inTime' },
  ],
}

const BODY_EXAMPLE = {
  records: [
    { type: 'in', seq: 1, recordNo: 'IN20261121000001', parkCode: 'P001', gateNo: 'E1', plateNo: '粤C12345', plateColor: 'blue', inTime: '2026-11-21 17:41:07', isReupload: 0 },
    { type: 'space', seq: 2, parkCode: 'P001', freeSpace: 118, totalSpace: 400, reportTime: '2026-11-21 17:45:00' },
    { type: 'in', seq: 3, recordNo: 'IN20261121000002', parkCode: 'P001', gateNo: 'E2', plateNo: '粤C54321', plateColor: 'blue', isReupload: 0 },
  ],
}

const ajv = new Ajv2020({ coerceTypes: 'array', useDefaults: true, allErrors: false, strict: false })
// The body is read as bytes (the signature covers them) and checked by the route after the signature.
const bodyLeftToRoute: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) =>
  httpPart === 'body' ? () => true : ajv.compile(schema as JsonSchema)

/** Registered as a plugin: its JSON parser keeps the raw bytes, for this route only. */
export function ingestRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const { metadata } = deps
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: INGEST_BODY_LIMIT }, (_req, body, done) => done(null, body))
  app.setErrorHandler((err: FastifyError) => {
    // Thrown on to the application's handler, which answers {code, message}.
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') throw new CitysyncError('CITYSYNC_ERR_INGEST_TOO_LARGE', [`body above ${INGEST_BODY_LIMIT} bytes`])
    throw err
  })

  app.post<{ Params: { sourceId: string }; Headers: Record<string, string | undefined>; Body: Buffer }>(
    '/api/v1/ingest/:sourceId',
    {
      bodyLimit: INGEST_BODY_LIMIT,
      config: { rateLimit: ingestRateLimit(deps.hygiene ?? hygieneFromEnv()) },
      validatorCompiler: bodyLeftToRoute,
      schema: {
        summary: 'Push a signed batch of vendor records to a push source; each record is acknowledged as accepted or rejected',
        description:
          'Signature: `X-Citysync-Signature: hex(HMAC(secret, X-Citysync-Timestamp + "\\n" + body))`, HMAC-SHA256 or HMAC-SM3 as the source is configured; ' +
          '`X-Citysync-Timestamp` in epoch ms or s, within the replay window (default 5 min). A bad signature or timestamp is refused with 401 and nothing lands. ' +
          'Rejected records go to the dead-letter store with their reason and raw payload; the rest land. The answer comes once the pipeline holds the batch, ' +
          `so an accepted record will land. A paused source answers 503 \`CITYSYNC_ERR_INGEST_PAUSED\` (send again later). Body at most ${INGEST_BODY_LIMIT} bytes. At most 600 pushes a minute per source and client address (\`CITYSYNC_INGEST_RATE_LIMIT\`), then 429 \`CITYSYNC_ERR_API_RATE_LIMITED\`.\n\n` +
          'Example:\n\n```sh\n' +
          "body='{\"records\":[{\"type\":\"in\",\"seq\":1,\"recordNo\":\"IN1\",\"parkCode\":\"P001\",\"plateNo\":\"粤C12345\",\"inTime\":\"2026-11-21 17:41:07\"}]}'\n" +
          'ts=$(date +%s%3N)\n' +
          'sig=$(printf \'%s\\n%s\' "$ts" "$body" | openssl dgst -sha256 -hmac "$SECRET" -hex | sed \'s/^.* //\')\n' +
          'curl -s -X POST localhost:3000/api/v1/ingest/hengqin-push -H \'content-type: application/json\' \\\n' +
          '  -H "X-Citysync-Timestamp: $ts" -H "X-Citysync-Signature: $sig" -d "$body"\n```',
        tags: ['ingest'],
        params: {
          type: 'object',
          required: ['sourceId'],
          properties: { sourceId: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{1,62}$' } },
        },
        headers: {
          type: 'object',
          properties: {
            [HEADER_TIMESTAMP]: { type: 'string', description: 'epoch ms (or s) when the pusher signed the request' },
            [HEADER_SIGNATURE]: { type: 'string', description: 'hex HMAC, optionally prefixed sha256= or sm3=' },
          },
        },
        body: {
          type: 'object',
          required: ['records'],
          properties: {
            records: {
              type: 'array',
              description: 'vendor items, each with "type": in | out | space | park (shapes as in the parking-lots open API)',
              items: { type: 'object', required: ['type'], properties: { type: { enum: ['in', 'out', 'space', 'park'] } }, additionalProperties: true },
            },
          },
          examples: [BODY_EXAMPLE],
        },
        response: {
          200: {
            type: 'object',
            required: ['sourceId', 'accepted', 'rejected', 'items'],
            properties: {
              sourceId: { type: 'string' },
              accepted: { type: 'integer' },
              rejected: { type: 'integer' },
              items: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['index', 'status'],
                  properties: {
                    index: { type: 'integer' },
                    status: { type: 'string', enum: ['accepted', 'rejected'] },
                    eventId: { type: 'string' },
                    code: { type: 'string' },
                    reason: { type: 'string' },
                  },
                },
              },
            },
            examples: [ACK_EXAMPLE],
          },
          400: { $ref: 'Error#' },
          401: { $ref: 'Error#' },
          404: { $ref: 'Error#' },
          409: { $ref: 'Error#' },
          413: { $ref: 'Error#' },
          429: { $ref: 'Error#' },
          503: { $ref: 'Error#' },
        },
      },
    },
    async (req, reply): Promise<PushAck> => {
      const ingest = deps.ingest
      if (ingest === undefined) throw new CitysyncError('CITYSYNC_ERR_INGEST_UNAVAILABLE', ['its API publishes to no bus'])
      const { sourceId } = req.params
      const source = await metadata.sources.get(sourceId)
      const connector = connectorFor(source.kind)
      if (!isPushConnector(connector)) throw new CitysyncError('CITYSYNC_ERR_INGEST_NOT_PUSH', [sourceId, source.kind])
      // Other media types are read by the application's parsers, not as bytes.
      if (!Buffer.isBuffer(req.body)) throw new CitysyncError('CITYSYNC_ERR_INGEST_BODY', ['send the batch as application/json'])
      const rawBody = req.body
      const now = ingest.clock.now()
      verifyPush(connector.push.auth(source.config), {
        timestamp: req.headers[HEADER_TIMESTAMP],
        signature: req.headers[HEADER_SIGNATURE],
        rawBody,
        now,
      })
      if (source.desiredState !== 'deployed') {
        void reply.header('retry-after', '60')
        throw new CitysyncError('CITYSYNC_ERR_INGEST_PAUSED', [sourceId])
      }

      const publisher = new AckingPublisher({ sourceId, bus: ingest.bus, catalogue: ingest.catalogue, clock: ingest.clock, protectPlate: ingest.protectPlate })
      const ackTimeoutMs = ingest.ackTimeoutMs ?? 30_000
      // Signed, so the vendor's own data: an unusable body is kept in the
      // dead-letter store like any rejected record. One over the record limit
      // is not bad data; the pusher splits it and sends it again.
      const text = rawBody.toString('utf8')
      const refuseBody = async (code: string, refusal: CitysyncError): Promise<never> => {
        publisher.reject('ingest', code, refusal.message, null, text)
        await acknowledged(publisher.flush(), ackTimeoutMs)
        throw refusal
      }
      let body: unknown
      try {
        body = JSON.parse(text) as unknown
      } catch (err) {
        // Without the parser's excerpt of the body, which may hold (part of) a plate.
        return refuseBody('malformed_json', new CitysyncError('CITYSYNC_ERR_INGEST_BODY', [`not JSON: ${jsonErrorText(err)}`]))
      }
      let items: PushItem[]
      try {
        items = connector.push.items(body, source.config, { timezone: source.timezone, now })
      } catch (err) {
        if (isCitysyncError(err, 'CITYSYNC_ERR_INGEST_BODY')) return refuseBody('invalid_body', err)
        throw err
      }

      const acks: ItemAck[] = []
      items.forEach((item, index) => {
        if (!item.ok) {
          publisher.reject('connector', item.code, item.reason, item.event, item.raw)
          acks.push({ index, status: 'rejected', code: item.code, reason: item.reason })
          return
        }
        publisher.lastRejection = undefined
        publisher.record(item.event, item.draft)
        const rejection = publisher.lastRejection as { code: string; reason: string } | undefined
        acks.push(
          rejection === undefined
            ? { index, status: 'accepted', eventId: deriveEventId(sourceId, item.event, item.draft) }
            : { index, status: 'rejected', ...rejection },
        )
      })
      await acknowledged(publisher.flush(), ackTimeoutMs)
      const at = ingest.clock.now()
      await metadata.connectorState.saveCheckpoint(sourceId, { lastPushAt: new Date(at).toISOString() }, at)

      const accepted = acks.filter((a) => a.status === 'accepted').length
      req.log.info({ sourceId, accepted, rejected: acks.length - accepted }, 'push acknowledged')
      return { sourceId, accepted, rejected: acks.length - accepted, items: acks }
    },
  )
  return Promise.resolve()
}
