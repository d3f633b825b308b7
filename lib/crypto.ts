import {
  createDecipheriv,
  createSecretKey,
  hkdfSync,
  randomBytes,
  randomFillSync,
  scryptSync,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto'
import { chmod, link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CitysyncError } from './errors.ts'
import { Sm3Hmac } from './sm3.ts'
import { Sm4 } from './sm4.ts'

// Node 20 (OpenSSL 3) offers sm3 and sm4-{ecb,cbc,cfb,ofb,ctr} but no SM4-GCM, so
// sealed values are SM4-CBC under a random IV, then authenticated with a
// truncated SM3-HMAC over everything before it (encrypt-then-MAC).
//
// Sealed value, hex of: version (1 byte, 0x01) || iv (16) || ciphertext (16·n, PKCS#7) || tag (16)
//   tag = first 16 bytes of HMAC-SM3(tagKey, version || iv || ciphertext)
// The version byte leaves room for a later algorithm or key rotation.
//
// Encryption key (32 bytes): bytes 0..15 are the SM4 key, bytes 16..31 the tag key.

const VERSION = 0x01
const BLOCK = 16
const TAG = 16
const MIN_SEALED = 1 + BLOCK + BLOCK + TAG

/** Treat the Buffers as immutable: prepared key state is cached per Buffer. */
export interface DerivedKeys {
  /** SM3-HMAC key for join keys (plateKey). */
  macKey: Buffer
  /** 32 bytes: SM4 key then tag key; see the sealed-value contract above. */
  encKey: Buffer
}

// Hot path (protectPlate, >100k calls/s): every key is prepared once and kept
// beside its Buffer. Node's createHmac/createCipheriv build a fresh OpenSSL
// context per call, which costs more than the SM3/SM4 work on a plate, so:
// - HMAC-SM3 runs in lib/sm3.ts, with the key's pad blocks compressed once;
// - SM4-CBC encryption chains blocks through lib/sm4.ts, the key's round keys
//   expanded once (CBC by definition: C[i] = E(P[i] xor C[i-1]), C[0] = E(P[0] xor IV)).
// Both are checked against node's createHmac and sm4-cbc decipher in the tests.

interface PreparedEncKey {
  sm4: Sm4
  cipherKey: KeyObject
  tag: Sm3Hmac
}

const macKeys = new WeakMap<Buffer, Sm3Hmac>()
const encKeys = new WeakMap<Buffer, PreparedEncKey>()

function preparedMac(key: Buffer): Sm3Hmac {
  let prepared = macKeys.get(key)
  if (prepared === undefined) {
    prepared = new Sm3Hmac(key)
    macKeys.set(key, prepared)
  }
  return prepared
}

function preparedEnc(key: Buffer): PreparedEncKey {
  let prepared = encKeys.get(key)
  if (prepared === undefined) {
    if (key.length !== 32) {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`encryption key must be 32 bytes, got ${key.length}`])
    }
    const cipherKey = createSecretKey(Buffer.from(key.subarray(0, 16)))
    prepared = {
      sm4: new Sm4(key.subarray(0, 16)),
      cipherKey,
      tag: new Sm3Hmac(key.subarray(16, 32)),
    }
    encKeys.set(key, prepared)
  }
  return prepared
}

// IVs drawn from a pooled random buffer: one getrandom call per 256 IVs.
const IV_POOL_SIZE = BLOCK * 256
const ivPool = Buffer.allocUnsafeSlow(IV_POOL_SIZE)
let ivOffset = IV_POOL_SIZE

function nextIv(): Buffer {
  if (ivOffset + BLOCK > IV_POOL_SIZE) {
    randomFillSync(ivPool)
    ivOffset = 0
  }
  const iv = ivPool.subarray(ivOffset, ivOffset + BLOCK)
  ivOffset += BLOCK
  return iv
}

export function sm3Hmac(key: Buffer, data: string): string {
  return preparedMac(key).hex(data)
}

export function sm4Encrypt(key: Buffer, plaintext: string): string {
  const { sm4, tag } = preparedEnc(key)
  const text = Buffer.from(plaintext, 'utf8')
  const ctLength = (Math.floor(text.length / BLOCK) + 1) * BLOCK
  const macEnd = 1 + BLOCK + ctLength
  const out = Buffer.allocUnsafe(macEnd + TAG)
  out[0] = VERSION
  nextIv().copy(out, 1)
  // PKCS#7 padding, then CBC chaining in place: each block is XORed with the
  // previous ciphertext block (the IV for the first) and encrypted.
  text.copy(out, 1 + BLOCK)
  out.fill(ctLength - text.length, 1 + BLOCK + text.length, macEnd)
  for (let offset = 1 + BLOCK; offset < macEnd; offset += BLOCK) {
    for (let i = 0; i < BLOCK; i++) out[offset + i] = (out[offset + i] as number) ^ (out[offset - BLOCK + i] as number)
    sm4.encryptBlock(out, offset)
  }
  tag.into(out.subarray(0, macEnd), out, macEnd, TAG)
  return out.toString('hex')
}

// After a key rotation, values sealed under an earlier key are still read: an
// encryption key may have predecessors (deriveKeys' `previous`), tried in order
// when a value does not authenticate under the key itself. The tag makes a
// wrong key fail cleanly, so trying one costs a MAC, and nothing is ever
// sealed under a predecessor.
const predecessors = new WeakMap<Buffer, readonly Buffer[]>()

export function sm4Decrypt(key: Buffer, sealedHex: string): string {
  const opened = openSealed(key, sealedHex)
  if (opened !== undefined) return opened
  for (const earlier of predecessors.get(key) ?? []) {
    const old = openSealed(earlier, sealedHex)
    if (old !== undefined) return old
  }
  throw new CitysyncError('CITYSYNC_ERR_CRYPTO_DECRYPT', ['authentication failed (wrong key or tampered value)'])
}

/** The clear text, or undefined when the value does not authenticate under `key`; throws on a malformed value. */
function openSealed(key: Buffer, sealedHex: string): string | undefined {
  const { cipherKey, tag } = preparedEnc(key)
  if (sealedHex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(sealedHex)) {
    throw new CitysyncError('CITYSYNC_ERR_CRYPTO_DECRYPT', ['not hex'])
  }
  const buf = Buffer.from(sealedHex, 'hex')
  if (buf.length < MIN_SEALED || (buf.length - 1 - BLOCK - TAG) % BLOCK !== 0) {
    throw new CitysyncError('CITYSYNC_ERR_CRYPTO_DECRYPT', [`sealed value has an impossible length (${buf.length} bytes)`])
  }
  if (buf[0] !== VERSION) {
    throw new CitysyncError('CITYSYNC_ERR_CRYPTO_DECRYPT', [`unknown sealed-value version ${buf[0]}`])
  }
  const macEnd = buf.length - TAG
  const expected = Buffer.from(tag.hex(buf.subarray(0, macEnd)).slice(0, TAG * 2), 'hex')
  if (!timingSafeEqual(expected, buf.subarray(macEnd))) return undefined
  const decipher = createDecipheriv('sm4-cbc', cipherKey, buf.subarray(1, 1 + BLOCK))
  return Buffer.concat([decipher.update(buf.subarray(1 + BLOCK, macEnd)), decipher.final()]).toString('utf8')
}

const HKDF_SALT = Buffer.from('citysync/hkdf-salt/v1')
const PASSPHRASE_SALT = Buffer.from('citysync/master-key/v1')
const MIN_KEY_BYTES = 16
const MIN_PASSPHRASE_CHARS = 16
const HEX_KEY = /^(?:[0-9a-fA-F]{2}){16,}$/

/**
 * Key material from CITYSYNC_MASTER_KEY text: hex of at least 16 bytes is
 * taken as is; anything else is a passphrase, stretched with scrypt (a fixed
 * salt: every process must derive the same keys from the same passphrase).
 */
export function masterKeyBytes(text: string): Buffer {
  const trimmed = text.trim()
  if (HEX_KEY.test(trimmed)) return Buffer.from(trimmed, 'hex')
  if ([...trimmed].length < MIN_PASSPHRASE_CHARS) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [
      `CITYSYNC_MASTER_KEY must be hex of at least ${MIN_KEY_BYTES} bytes or a passphrase of at least ${MIN_PASSPHRASE_CHARS} characters`,
    ])
  }
  return scryptSync(trimmed, PASSPHRASE_SALT, 32, { N: 1 << 14, r: 8, p: 1 })
}

/**
 * The keys of a master key. `previous` are earlier master keys (newest
 * first): values sealed under them still open with the returned encKey (see
 * sm4Decrypt). Join keys (macKey) have no predecessors: plates keyed before a
 * rotation do not join with plates keyed after it.
 */
export function deriveKeys(master: string | Buffer, previous: readonly (string | Buffer)[] = []): DerivedKeys {
  const ikm = typeof master === 'string' ? masterKeyBytes(master) : master
  if (ikm.length < MIN_KEY_BYTES) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`master key must be at least ${MIN_KEY_BYTES} bytes`])
  }
  const keys = {
    macKey: Buffer.from(hkdfSync('sm3', ikm, HKDF_SALT, 'citysync/v1/mac', 32)),
    encKey: Buffer.from(hkdfSync('sm3', ikm, HKDF_SALT, 'citysync/v1/enc', 32)),
  }
  if (previous.length > 0) predecessors.set(keys.encKey, previous.map((p) => deriveKeys(p).encKey))
  return keys
}

/**
 * CITYSYNC_MASTER_KEY_PREVIOUS: the master keys used before the current one,
 * newest first, comma-separated (hex, or passphrases without commas).
 */
export function previousMasterKeys(env: Record<string, string | undefined>): Buffer[] {
  return (env.CITYSYNC_MASTER_KEY_PREVIOUS ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k !== '')
    .map(masterKeyBytes)
}

export interface LoadMasterKeyOptions {
  dataDir: string
  env: Record<string, string | undefined>
  /**
   * Embedded mode: with no CITYSYNC_MASTER_KEY, create `<dataDir>/keys/master.key`
   * once and reuse it. Distributed processes must share one key, so they pass
   * false and a missing variable is an error.
   */
  generate?: boolean
}

/** Contract: `keys/master.key` holds the key as hex text, so it can be moved into CITYSYNC_MASTER_KEY. */
export async function loadMasterKey(options: LoadMasterKeyOptions): Promise<Buffer> {
  const fromEnv = options.env.CITYSYNC_MASTER_KEY
  if (fromEnv !== undefined && fromEnv.trim() !== '') return masterKeyBytes(fromEnv)
  if (options.generate === false) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_MISSING', ['CITYSYNC_MASTER_KEY'])
  }
  const dir = join(options.dataDir, 'keys')
  const file = join(dir, 'master.key')
  const existing = await readKeyFile(file)
  if (existing !== undefined) return existing
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const key = randomBytes(32)
  // Written aside, then linked into place: link() fails if the name exists, so
  // a racing process never reads a half-written file and both end up agreeing.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`
  await writeFile(tmp, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' })
  try {
    // writeFile's mode is filtered by the umask; make sure it is 0600.
    await chmod(tmp, 0o600)
    await link(tmp, file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    const theirs = await readKeyFile(file)
    if (theirs === undefined) throw err
    return theirs
  } finally {
    await unlink(tmp)
  }
  return key
}

async function readKeyFile(file: string): Promise<Buffer | undefined> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const hex = text.trim()
  if (!HEX_KEY.test(hex)) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${file} does not hold a hex key`])
  }
  return Buffer.from(hex, 'hex')
}

// Separators people and vendor systems put inside plates: spaces, middle dots
// (·•‧・∙⋅), hyphens and dashes. NFKC first turns full-width letters and digits into ASCII.
const PLATE_NOISE = /[\s\u00B7\u0387\u2022\u2027\u2219\u22C5\u30FB\-\u2010-\u2015\u2212]/g

export function normalisePlate(text: string): string {
  return text.normalize('NFKC').replace(PLATE_NOISE, '').toUpperCase()
}

/** '粤C12345' → '粤C·***45': province and letter, then stars, then the last two characters. */
export function maskPlate(plate: string): string {
  return maskNormalised(normalisePlate(plate))
}

function maskNormalised(normal: string): string {
  const chars = Array.from(normal)
  if (chars.length <= 4) return '*'.repeat(chars.length)
  return `${chars[0]}${chars[1]}·${'*'.repeat(chars.length - 4)}${chars[chars.length - 2]}${chars[chars.length - 1]}`
}

export interface ProtectedPlate {
  plateKey: string | null
  plateCipher: string | null
  plateMasked: string | null
}

/** The three stored forms of a plate; the clear plate itself is never stored. */
export function protectPlate(plate: string | null | undefined, keys: DerivedKeys): ProtectedPlate {
  const normal = plate === null || plate === undefined ? '' : normalisePlate(plate)
  if (normal === '') return { plateKey: null, plateCipher: null, plateMasked: null }
  return {
    plateKey: sm3Hmac(keys.macKey, normal),
    plateCipher: sm4Encrypt(keys.encKey, normal),
    plateMasked: maskNormalised(normal),
  }
}

/** Clear plate from plateCipher (admins only). */
export function revealPlate(plateCipher: string, keys: DerivedKeys): string {
  return sm4Decrypt(keys.encKey, plateCipher)
}
