import { type FastifyInstance } from 'fastify'
import { AuditLog } from '../../lib/auth/audit.ts'
import { type DerivedKeys, revealPlate } from '../../lib/crypto.ts'
import { CitysyncError, errorMessage, isCitysyncError } from '../../lib/errors.ts'
import { type ApiDeps } from '../app.ts'

// POST /api/v1/plates/reveal: the one way a clear plate leaves the API.
// Needs permission plates:reveal (admins; enforced with every other route in
// api/route-permissions.ts) and a reason. Every attempt, answered or not, is
// written to the audit log before the answer goes out, with the reason and the
// masked plate; if the audit row cannot be written, nothing is revealed (so the
// route writes its row itself, instead of the one api/auth.ts writes for every
// change once the answer is made). The clear plate itself is never logged or audited.

/** What the reveal route needs: the keys of this process (and earlier ones, to read older values). */
export interface PlateRevealDeps {
  keys: DerivedKeys
}

export const REVEAL_ACTION = 'plates.reveal'

interface RevealBody {
  eventId: string
  reason: string
  sourceId?: string
}

interface PassageRow {
  sourceId: string
  lotId: string
  occurredAt: number
  plateCipher: string | null
  plateMasked: string | null
}

const REVEAL_EXAMPLE = {
  eventId: '5f0c6d1e9b8a7c6d5e4f3a2b1c0d9e8f',
  sourceId: 'hengqin-parking',
  lotId: 'P001',
  occurredAt: '2026-11-21T09:41:07.000Z',
  plate: '粤C12345',
  masked: '粤C·***45',
}

export function plateRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const audit = new AuditLog({ knex: deps.metadata.knex, dialect: deps.metadata.dialect })

  app.post<{ Body: RevealBody }>(
    '/api/v1/plates/reveal',
    {
      // Marks the one answer that carries a clear plate (api/hygiene.ts masks plates in all others).
      config: { clearPlates: true },
      schema: {
        summary: 'Reveal the clear plate of one parking passage (admins; audited with the reason given)',
        description:
          'Plates are stored only protected: a keyed SM3 HMAC for joining, an SM4-sealed copy, and a masked form. This opens the sealed copy of one passage, ' +
          'found by its `eventId` (narrowed by `sourceId` when given). Permission `plates:reveal`. The request, its reason and the masked plate are written to ' +
          'the audit log before the answer; if that fails the answer is 503 and nothing is revealed.\n\n' +
          "```sh\ncurl -s -X POST localhost:3000/api/v1/plates/reveal -H 'content-type: application/json' -H \"authorization: Bearer $TOKEN\" \\\n" +
          '  -d \'{"eventId":"5f0c6d1e9b8a7c6d5e4f3a2b1c0d9e8f","reason":"police request 2026-118"}\'\n```',
        tags: ['personal data'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['eventId', 'reason'],
          properties: {
            eventId: { type: 'string', pattern: '^[0-9a-f]{32}$', description: 'the passage event id (as in parking_passage.eventId)' },
            reason: { type: 'string', minLength: 5, maxLength: 500, pattern: '\\S', description: 'why the plate is needed; kept in the audit log' },
            sourceId: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{1,62}$', description: 'the source of the passage, to narrow the search' },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['eventId', 'sourceId', 'lotId', 'occurredAt', 'plate', 'masked'],
            properties: {
              eventId: { type: 'string' },
              sourceId: { type: 'string' },
              lotId: { type: 'string' },
              occurredAt: { type: 'string', format: 'date-time' },
              plate: { type: 'string', description: 'the clear plate, normalised (upper case, no separators)' },
              masked: { type: 'string' },
            },
            examples: [REVEAL_EXAMPLE],
          },
          400: { $ref: 'Error#' },
          404: { $ref: 'Error#' },
          500: { $ref: 'Error#' },
          503: { $ref: 'Error#' },
        },
      },
    },
    async (req) => {
      const { eventId, reason, sourceId } = req.body
      const who = req.principal
      req.audit = null
      const record = async (status: number, detail: Record<string, unknown>): Promise<void> => {
        try {
          await audit.append({
            actor: who?.username ?? null,
            actorKind: who?.kind ?? null,
            role: who?.role ?? null,
            action: REVEAL_ACTION,
            method: req.method,
            route: req.routeOptions.url ?? null,
            target: eventId,
            status,
            ip: req.ip,
            userAgent: req.headers['user-agent'] ?? null,
            detail: { reason, ...(sourceId === undefined ? {} : { sourceId }), ...detail },
          })
        } catch (err) {
          throw isCitysyncError(err) ? err : new CitysyncError('CITYSYNC_ERR_AUDIT_WRITE', [errorMessage(err)], { cause: err })
        }
      }

      const keys = deps.plates?.keys
      if (keys === undefined) {
        const refusal = new CitysyncError('CITYSYNC_ERR_PLATE_UNAVAILABLE', ['it has no master key loaded'])
        await record(refusal.status, { outcome: refusal.code })
        throw refusal
      }
      const rows = await deps.warehouse.query<PassageRow>(
        `SELECT sourceId, lotId, toUnixTimestamp64Milli(occurredAt) AS occurredAt, plateCipher, plateMasked
         FROM parking_passage FINAL
         WHERE eventId = {eventId:String}${sourceId === undefined ? '' : ' AND sourceId = {sourceId:String}'}
         LIMIT 1`,
        { eventId, ...(sourceId === undefined ? {} : { sourceId }) },
      )
      const row = rows[0]
      if (row === undefined || row.plateCipher === null) {
        const missing = new CitysyncError('CITYSYNC_ERR_PLATE_NOT_FOUND', [eventId])
        await record(missing.status, { outcome: missing.code })
        throw missing
      }
      let plate: string
      try {
        plate = revealPlate(row.plateCipher, keys)
      } catch (err) {
        const code = isCitysyncError(err) ? err.code : 'CITYSYNC_ERR_CRYPTO_DECRYPT'
        await record(500, { outcome: code, sourceId: row.sourceId, lotId: row.lotId, masked: row.plateMasked })
        throw err
      }
      const masked = row.plateMasked ?? ''
      await record(200, { outcome: 'revealed', sourceId: row.sourceId, lotId: row.lotId, masked })
      req.log.info({ eventId, sourceId: row.sourceId, actor: who?.username }, 'plate revealed')
      return { eventId, sourceId: row.sourceId, lotId: row.lotId, occurredAt: new Date(Number(row.occurredAt)).toISOString(), plate, masked }
    },
  )
  return Promise.resolve()
}
