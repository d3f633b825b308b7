import { createHmac } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { type PushAuth } from '../../connectors/parking-lots/push.ts'
import { sm3Hmac } from '../../lib/crypto.ts'
import { isCitysyncError } from '../../lib/errors.ts'
import { parsePushTimestamp, signPush, verifyPush } from './ingest.ts'

const NOW = 1_795_300_000_000
const SECRET = 'push-shared-secret-4f9a1c'
const BODY = Buffer.from('{"records":[{"type":"in","plateNo":"粤C12345"}]}')
const auth: PushAuth = { secrets: [SECRET], algorithm: 'hmac-sha256', replayWindowMs: 300_000 }

function refusal(a: PushAuth, req: { timestamp?: string; signature?: string; rawBody?: Buffer; now?: number }): string {
  try {
    verifyPush(a, { timestamp: req.timestamp, signature: req.signature, rawBody: req.rawBody ?? BODY, now: req.now ?? NOW })
  } catch (err) {
    return isCitysyncError(err) ? `${err.status} ${err.code}: ${err.message}` : `not coded: ${String(err)}`
  }
  return 'accepted'
}

describe('push signature', () => {
  it('is the HMAC of the timestamp text, a newline and the raw body', () => {
    const ts = String(NOW)
    const expected = createHmac('sha256', SECRET).update(Buffer.concat([Buffer.from(`${ts}\n`), BODY])).digest('hex')
    expect(signPush('hmac-sha256', SECRET, ts, BODY)).toBe(expected)
    // HMAC-SM3 agrees with lib/crypto's own SM3-HMAC implementation.
    expect(signPush('hmac-sm3', SECRET, ts, BODY)).toBe(sm3Hmac(Buffer.from(SECRET), `${ts}\n${BODY.toString('utf8')}`))
  })

  it('reads timestamps in epoch milliseconds or seconds', () => {
    expect(parsePushTimestamp(String(NOW))).toBe(NOW)
    expect(parsePushTimestamp(String(NOW / 1000))).toBe(NOW)
    expect(parsePushTimestamp(' 1795300000 ')).toBe(NOW)
    for (const bad of [undefined, '', '-1', '0', '1795300000.5', '2026-11-21T10:00:00Z', '1e12', '12345678901234567']) expect(parsePushTimestamp(bad)).toBeNull()
  })

  it('accepts a signature made with the current or the previous secret, bare or prefixed, in the window either way', () => {
    const rotating: PushAuth = { ...auth, secrets: [SECRET, 'previous-secret-0000000'] }
    for (const [ts, secret] of [
      [String(NOW), SECRET],
      [String(NOW - 300_000), SECRET],
      [String((NOW + 300_000) / 1000), SECRET],
      [String(NOW), 'previous-secret-0000000'],
    ] as const) {
      const signature = signPush('hmac-sha256', secret, ts, BODY)
      expect(refusal(rotating, { timestamp: ts, signature })).toBe('accepted')
      expect(refusal(rotating, { timestamp: ts, signature: `sha256=${signature.toUpperCase()}` })).toBe('accepted')
    }
  })

  it('refuses with 401 whatever does not match, without saying which part', () => {
    const ts = String(NOW)
    const good = signPush('hmac-sha256', SECRET, ts, BODY)
    const no = '401 CITYSYNC_ERR_INGEST_SIGNATURE: push refused: signature does not match'
    expect(refusal(auth, { timestamp: ts, signature: signPush('hmac-sha256', 'previous-secret-0000000', ts, BODY) })).toBe(no)
    expect(refusal(auth, { timestamp: ts, signature: good, rawBody: Buffer.from(BODY.toString().replace('in', 'out')) })).toBe(no)
    expect(refusal(auth, { timestamp: String(NOW + 1), signature: good })).toBe(no)
    expect(refusal(auth, { timestamp: ts, signature: good.slice(0, 32) })).toBe(no)
    expect(refusal(auth, { timestamp: ts, signature: signPush('hmac-sm3', SECRET, ts, BODY) })).toBe(no)
    expect(refusal(auth, { timestamp: ts, signature: `sm3=${good}` })).toBe('401 CITYSYNC_ERR_INGEST_SIGNATURE: push refused: this source expects hmac-sha256 signatures')
    expect(refusal(auth, { timestamp: ts })).toBe('401 CITYSYNC_ERR_INGEST_SIGNATURE: push refused: x-citysync-signature is missing or not hex')
    expect(refusal(auth, { timestamp: ts, signature: 'zz' + good })).toBe('401 CITYSYNC_ERR_INGEST_SIGNATURE: push refused: x-citysync-signature is missing or not hex')
  })

  it('refuses timestamps outside the replay window, old or ahead, before looking at the signature', () => {
    for (const [ts, text] of [
      [String(NOW - 300_001), '300 s old'],
      [String(NOW + 3_600_000), '3600 s ahead'],
      [String(NOW / 1000 - 86_400), '86400 s old'],
    ] as const) {
      expect(refusal(auth, { timestamp: ts, signature: signPush('hmac-sha256', SECRET, ts, BODY) })).toBe(
        `401 CITYSYNC_ERR_INGEST_TIMESTAMP: push refused: timestamp is ${text}, outside the replay window of 300 s`,
      )
    }
    expect(refusal(auth, { signature: 'ab' })).toBe('401 CITYSYNC_ERR_INGEST_TIMESTAMP: push refused: x-citysync-timestamp is missing or not epoch seconds or milliseconds')
  })
})
