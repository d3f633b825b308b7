import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  deriveKeys,
  loadMasterKey,
  maskPlate,
  masterKeyBytes,
  normalisePlate,
  protectPlate,
  revealPlate,
  sm3Hmac,
  sm4Decrypt,
  sm4Encrypt,
} from './crypto.ts'
import { isCitysyncError } from './errors.ts'

const keys = deriveKeys('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff')

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return isCitysyncError(err) ? err.code : `not coded: ${String(err)}`
  }
  return undefined
}

describe('known answers', () => {
  it('SM3 of "abc" (GB/T 32905)', () => {
    expect(createHash('sm3').update('abc').digest('hex')).toBe(
      '66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0',
    )
  })

  it('SM4 block (GB/T 32907)', () => {
    const key = Buffer.from('0123456789abcdeffedcba9876543210', 'hex')
    const cipher = createCipheriv('sm4-ecb', key, null).setAutoPadding(false)
    const ct = Buffer.concat([cipher.update(key), cipher.final()])
    expect(ct.toString('hex')).toBe('681edf34d206965e86b3e94f536e4246')
  })

  it('sm3Hmac is RFC 2104 HMAC over SM3', () => {
    const key = Buffer.from('secret key of some length')
    const block = 64
    const k = Buffer.alloc(block)
    key.copy(k)
    const ipad = Buffer.from(k.map((b) => b ^ 0x36))
    const opad = Buffer.from(k.map((b) => b ^ 0x5c))
    const inner = createHash('sm3').update(ipad).update('粤C12345').digest()
    const expected = createHash('sm3').update(opad).update(inner).digest('hex')
    expect(sm3Hmac(key, '粤C12345')).toBe(expected)
  })
})

describe('prepared fast paths agree with node', () => {
  it('sm3Hmac equals createHmac for any key length and message', () => {
    for (const keyLength of [1, 16, 32, 63, 64, 65, 100]) {
      const key = randomBytes(keyLength)
      for (const message of ['', 'a', '粤C12345', '💡'.repeat(40), 'x'.repeat(170), 'y'.repeat(171), 'z'.repeat(5_000)]) {
        expect(sm3Hmac(key, message)).toBe(createHmac('sm3', key).update(message, 'utf8').digest('hex'))
      }
    }
  })

  it('sm4Encrypt is standard SM4-CBC with PKCS#7 and a standard HMAC-SM3 tag', () => {
    const encKey = randomBytes(32)
    for (let length = 0; length <= 50; length++) {
      const text = 'p'.repeat(length)
      const sealed = Buffer.from(sm4Encrypt(encKey, text), 'hex')
      const iv = sealed.subarray(1, 17)
      const ct = sealed.subarray(17, sealed.length - 16)
      const decipher = createDecipheriv('sm4-cbc', encKey.subarray(0, 16), iv)
      expect(Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8')).toBe(text)
      const tag = createHmac('sm3', encKey.subarray(16)).update(sealed.subarray(0, sealed.length - 16)).digest()
      expect(sealed.subarray(sealed.length - 16).equals(tag.subarray(0, 16))).toBe(true)
    }
  })
})

describe('sm4Encrypt / sm4Decrypt', () => {
  it('round-trips text of any length, with a fresh IV each time', () => {
    for (const text of ['', 'a', '粤C12345', 'x'.repeat(16), 'y'.repeat(100)]) {
      const a = sm4Encrypt(keys.encKey, text)
      const b = sm4Encrypt(keys.encKey, text)
      expect(a).not.toBe(b)
      expect(sm4Decrypt(keys.encKey, a)).toBe(text)
    }
  })

  it('has the documented layout: version, iv, ciphertext, tag', () => {
    const sealed = sm4Encrypt(keys.encKey, '粤C12345')
    expect(sealed.slice(0, 2)).toBe('01')
    // 10 UTF-8 bytes pad to one block: 1 + 16 + 16 + 16 bytes
    expect(sealed.length).toBe(49 * 2)
  })

  it('detects tampering anywhere in the value', () => {
    const sealed = sm4Encrypt(keys.encKey, '粤C12345')
    for (let i = 2; i < sealed.length; i += 7) {
      const flipped = sealed.slice(0, i) + (sealed[i] === '0' ? '1' : '0') + sealed.slice(i + 1)
      expect(codeOf(() => sm4Decrypt(keys.encKey, flipped))).toBe('CITYSYNC_ERR_CRYPTO_DECRYPT')
    }
  })

  it('rejects a wrong key, truncation, bad hex and unknown versions', () => {
    const sealed = sm4Encrypt(keys.encKey, 'secret')
    const other = deriveKeys(randomBytes(32))
    expect(codeOf(() => sm4Decrypt(other.encKey, sealed))).toBe('CITYSYNC_ERR_CRYPTO_DECRYPT')
    expect(codeOf(() => sm4Decrypt(keys.encKey, sealed.slice(0, -2)))).toBe('CITYSYNC_ERR_CRYPTO_DECRYPT')
    expect(codeOf(() => sm4Decrypt(keys.encKey, sealed.slice(0, -32)))).toBe('CITYSYNC_ERR_CRYPTO_DECRYPT')
    expect(codeOf(() => sm4Decrypt(keys.encKey, 'zz' + sealed.slice(2)))).toBe('CITYSYNC_ERR_CRYPTO_DECRYPT')
    expect(codeOf(() => sm4Decrypt(keys.encKey, '02' + sealed.slice(2)))).toBe('CITYSYNC_ERR_CRYPTO_DECRYPT')
  })

  it('insists on a 32-byte key', () => {
    expect(codeOf(() => sm4Encrypt(randomBytes(16), 'x'))).toBe('CITYSYNC_ERR_CONFIG_INVALID')
  })
})

describe('deriveKeys', () => {
  it('is deterministic and separates the two keys', () => {
    const a = deriveKeys('a passphrase that is long enough')
    const b = deriveKeys('a passphrase that is long enough')
    expect(a.macKey.equals(b.macKey)).toBe(true)
    expect(a.encKey.equals(b.encKey)).toBe(true)
    expect(a.macKey.equals(a.encKey)).toBe(false)
    expect(a.encKey.length).toBe(32)
  })

  it('reads hex as bytes and stretches passphrases', () => {
    expect(masterKeyBytes('00112233445566778899aabbccddeeff').toString('hex')).toBe('00112233445566778899aabbccddeeff')
    expect(masterKeyBytes('correct horse battery staple').length).toBe(32)
    expect(deriveKeys(Buffer.from('00112233445566778899aabbccddeeff', 'hex')).macKey).toEqual(
      deriveKeys('00112233445566778899aabbccddeeff').macKey,
    )
  })

  it('refuses short secrets', () => {
    expect(codeOf(() => deriveKeys('short'))).toBe('CITYSYNC_ERR_CONFIG_INVALID')
    expect(codeOf(() => deriveKeys(Buffer.alloc(8)))).toBe('CITYSYNC_ERR_CONFIG_INVALID')
  })
})

describe('plates', () => {
  it.each([
    ['粤C 12345', '粤C12345'],
    ['粤C·12345', '粤C12345'],
    [' 粤c-12345 ', '粤C12345'],
    ['粤Ｃ１２３４５', '粤C12345'],
    ['粤C・D12345', '粤CD12345'],
    ['京A\u00a012345', '京A12345'],
  ])('normalises %j', (raw, normal) => {
    expect(normalisePlate(raw)).toBe(normal)
  })

  it.each([
    ['粤C12345', '粤C·***45'],
    ['粤CD12345', '粤C·****45'],
    ['粤C·12345', '粤C·***45'],
    ['粤B1234学', '粤B·***4学'],
    ['AB12', '****'],
    ['', ''],
  ])('masks %j as %j', (plate, masked) => {
    expect(maskPlate(plate)).toBe(masked)
  })

  it('gives spelling variants of one plate one plateKey', () => {
    const a = protectPlate('粤C 12345', keys)
    const b = protectPlate('粤C·12345', keys)
    expect(a.plateKey).toMatch(/^[0-9a-f]{64}$/)
    expect(a.plateKey).toBe(b.plateKey)
    expect(a.plateMasked).toBe('粤C·***45')
    expect(a.plateCipher).not.toBe(b.plateCipher)
    expect(revealPlate(a.plateCipher as string, keys)).toBe('粤C12345')
    expect(protectPlate('粤C12346', keys).plateKey).not.toBe(a.plateKey)
  })

  it('turns a missing or blank plate into nulls', () => {
    const none = { plateKey: null, plateCipher: null, plateMasked: null }
    expect(protectPlate(null, keys)).toEqual(none)
    expect(protectPlate(undefined, keys)).toEqual(none)
    expect(protectPlate(' · ', keys)).toEqual(none)
  })
})

describe('loadMasterKey', () => {
  const dirs: string[] = []
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
  })
  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'citysync-key-'))
    dirs.push(dir)
    return dir
  }

  it('prefers CITYSYNC_MASTER_KEY', async () => {
    const dataDir = await tempDir()
    const key = await loadMasterKey({ dataDir, env: { CITYSYNC_MASTER_KEY: 'ab'.repeat(32) } })
    expect(key.toString('hex')).toBe('ab'.repeat(32))
    await expect(stat(join(dataDir, 'keys'))).rejects.toThrow()
  })

  it('creates keys/master.key once with mode 0600 and then reuses it', async () => {
    const dataDir = await tempDir()
    const [first, second] = await Promise.all([
      loadMasterKey({ dataDir, env: {} }),
      loadMasterKey({ dataDir, env: {} }),
    ])
    expect(first.length).toBe(32)
    expect(second.equals(first)).toBe(true)
    const file = join(dataDir, 'keys', 'master.key')
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect((await readFile(file, 'utf8')).trim()).toBe(first.toString('hex'))
    expect((await loadMasterKey({ dataDir, env: {} })).equals(first)).toBe(true)
  })

  it('refuses to invent a key when told not to', async () => {
    const dataDir = await tempDir()
    await expect(loadMasterKey({ dataDir, env: {}, generate: false })).rejects.toMatchObject({
      code: 'CITYSYNC_ERR_CONFIG_MISSING',
    })
  })
})
