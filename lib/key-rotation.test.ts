import { describe, expect, it } from 'vitest'
import { deriveKeys, previousMasterKeys, protectPlate, revealPlate, sm4Decrypt, sm4Encrypt } from './crypto.ts'
import { isCitysyncError } from './errors.ts'
import { openSecrets } from './source-config.ts'

// After a rotation (CITYSYNC_MASTER_KEY new, CITYSYNC_MASTER_KEY_PREVIOUS the
// old ones): what was sealed before still opens, new values are sealed under
// the new key only, and join keys change.

const OLDEST = '0f'.repeat(32)
const OLD = 'the previous master key as a passphrase'
const NEW = 'a1'.repeat(32)

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return isCitysyncError(err) ? err.code : `not coded: ${String(err)}`
  }
  return undefined
}

describe('key rotation', () => {
  const oldest = deriveKeys(OLDEST)
  const old = deriveKeys(OLD)
  const rotated = deriveKeys(NEW, previousMasterKeys({ CITYSYNC_MASTER_KEY_PREVIOUS: ` ${OLD} , ${OLDEST}` }))

  it('opens plates and secrets sealed under any earlier key, and seals new ones under the new key only', () => {
    const before = protectPlate('沪AD12345', old)
    const longBefore = protectPlate('粤C12345', oldest)
    expect(revealPlate(before.plateCipher!, rotated)).toBe('沪AD12345')
    expect(revealPlate(longBefore.plateCipher!, rotated)).toBe('粤C12345')
    const config = { baseUrl: 'http://vendor', appKey: { $sealed: sm4Encrypt(old.encKey, JSON.stringify('app-key-1')) } }
    expect(openSecrets(config, rotated.encKey)).toEqual({ baseUrl: 'http://vendor', appKey: 'app-key-1' })

    const after = protectPlate('京A88888', rotated)
    expect(revealPlate(after.plateCipher!, rotated)).toBe('京A88888')
    expect(codeOf(() => revealPlate(after.plateCipher!, old))).toBe('CITYSYNC_ERR_CRYPTO_DECRYPT')
    // A key derived without predecessors reads only its own values.
    expect(codeOf(() => revealPlate(before.plateCipher!, deriveKeys(NEW)))).toBe('CITYSYNC_ERR_CRYPTO_DECRYPT')
  })

  it('does not mask a malformed value as a wrong key', () => {
    expect(() => sm4Decrypt(rotated.encKey, 'zz')).toThrow('not hex')
    expect(() => sm4Decrypt(rotated.encKey, '02' + '00'.repeat(48))).toThrow('unknown sealed-value version 2')
  })

  it('changes join keys: a plate keyed before the rotation does not join with one keyed after', () => {
    expect(protectPlate('沪AD12345', rotated).plateKey).not.toBe(protectPlate('沪AD12345', old).plateKey)
    expect(protectPlate('沪AD12345', rotated).plateKey).toBe(protectPlate('沪AD12345', deriveKeys(NEW)).plateKey)
  })

  it('reads CITYSYNC_MASTER_KEY_PREVIOUS as a comma list and refuses a key that is too short', () => {
    expect(previousMasterKeys({})).toEqual([])
    expect(previousMasterKeys({ CITYSYNC_MASTER_KEY_PREVIOUS: `${OLDEST},` }).map((k) => k.toString('hex'))).toEqual([OLDEST])
    expect(codeOf(() => previousMasterKeys({ CITYSYNC_MASTER_KEY_PREVIOUS: 'short' }))).toBe('CITYSYNC_ERR_CONFIG_INVALID')
  })
})
