// SM3 (GB/T 32905-2016) and HMAC-SM3 over it, for short messages on the hot
// path. OpenSSL has SM3 too, but a call into it costs more than hashing a
// plate: each HMAC there is four one-shot digests with their own contexts.
// Here the key's padded blocks are compressed once, when the key is prepared,
// so an HMAC of a message under 56 bytes is two compressions. Only 32-bit
// additions, rotations and logic: no table lookups indexed by data.
// lib/sm3.test.ts checks it against OpenSSL's sm3 and HMAC-SM3.

const BLOCK = 64
const WORDS = 8

const IV = new Int32Array([0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600, 0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e])

function rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n))
}

// T_j rotated left by j mod 32, as the compression uses it.
const TJ = new Int32Array(64)
for (let j = 0; j < 64; j++) {
  const t = j < 16 ? 0x79cc4519 : 0x7a879d8a
  const r = j % 32
  TJ[j] = r === 0 ? t : rotl(t, r)
}

const W = new Int32Array(68)

/** One compression of `block[off..off+64)` into `v`. */
function compress(v: Int32Array, block: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) {
    const p = off + 4 * i
    W[i] = (block[p]! << 24) | (block[p + 1]! << 16) | (block[p + 2]! << 8) | block[p + 3]!
  }
  for (let j = 16; j < 68; j++) {
    const w3 = W[j - 3]!
    const w13 = W[j - 13]!
    const x = W[j - 16]! ^ W[j - 9]! ^ ((w3 << 15) | (w3 >>> 17))
    W[j] = x ^ ((x << 15) | (x >>> 17)) ^ ((x << 23) | (x >>> 9)) ^ ((w13 << 7) | (w13 >>> 25)) ^ W[j - 6]!
  }
  let a = v[0]!
  let b = v[1]!
  let c = v[2]!
  let d = v[3]!
  let e = v[4]!
  let f = v[5]!
  let g = v[6]!
  let h = v[7]!
  // Rounds 0..15 and 16..63 differ only in their boolean functions.
  for (let j = 0; j < 16; j++) {
    const a12 = (a << 12) | (a >>> 20)
    const t = (a12 + e + TJ[j]!) | 0
    const ss1 = (t << 7) | (t >>> 25)
    const w = W[j]!
    const tt1 = ((a ^ b ^ c) + d + (ss1 ^ a12) + (w ^ W[j + 4]!)) | 0
    const tt2 = ((e ^ f ^ g) + h + ss1 + w) | 0
    d = c
    c = (b << 9) | (b >>> 23)
    b = a
    a = tt1
    h = g
    g = (f << 19) | (f >>> 13)
    f = e
    e = tt2 ^ ((tt2 << 9) | (tt2 >>> 23)) ^ ((tt2 << 17) | (tt2 >>> 15))
  }
  for (let j = 16; j < 64; j++) {
    const a12 = (a << 12) | (a >>> 20)
    const t = (a12 + e + TJ[j]!) | 0
    const ss1 = (t << 7) | (t >>> 25)
    const w = W[j]!
    const tt1 = (((a & b) | (a & c) | (b & c)) + d + (ss1 ^ a12) + (w ^ W[j + 4]!)) | 0
    const tt2 = (((e & f) | (~e & g)) + h + ss1 + w) | 0
    d = c
    c = (b << 9) | (b >>> 23)
    b = a
    a = tt1
    h = g
    g = (f << 19) | (f >>> 13)
    f = e
    e = tt2 ^ ((tt2 << 9) | (tt2 >>> 23)) ^ ((tt2 << 17) | (tt2 >>> 15))
  }
  v[0]! ^= a
  v[1]! ^= b
  v[2]! ^= c
  v[3]! ^= d
  v[4]! ^= e
  v[5]! ^= f
  v[6]! ^= g
  v[7]! ^= h
}

/**
 * Hashes `buf[0..length)` into `v`, which holds the state after `prefixBytes`
 * already compressed (0 for a plain hash, 64 after an HMAC pad block).
 * `buf` must have room for the padding: length + 72 bytes.
 */
function finish(v: Int32Array, buf: Uint8Array, length: number, prefixBytes: number): void {
  let off = 0
  for (; off + BLOCK <= length; off += BLOCK) compress(v, buf, off)
  const rest = length - off
  const tail = rest + 9 <= BLOCK ? BLOCK : 2 * BLOCK
  buf[length] = 0x80
  buf.fill(0, length + 1, off + tail - 8)
  // Bit length, 64-bit big-endian; messages here are far below 2^53 bits.
  const bits = (prefixBytes + length) * 8
  const hi = Math.floor(bits / 2 ** 32)
  const end = off + tail
  buf[end - 8] = hi >>> 24
  buf[end - 7] = hi >>> 16
  buf[end - 6] = hi >>> 8
  buf[end - 5] = hi
  buf[end - 4] = bits >>> 24
  buf[end - 3] = bits >>> 16
  buf[end - 2] = bits >>> 8
  buf[end - 1] = bits
  for (; off < end; off += BLOCK) compress(v, buf, off)
}

function writeWords(v: Int32Array, out: Uint8Array, at: number, bytes: number): void {
  for (let i = 0; i < bytes; i++) out[at + i] = v[i >> 2]! >>> (24 - 8 * (i & 3))
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

function wordsHex(v: Int32Array): string {
  let s = ''
  for (let i = 0; i < WORDS; i++) {
    const x = v[i]!
    s += HEX[x >>> 24]! + HEX[(x >>> 16) & 0xff]! + HEX[(x >>> 8) & 0xff]! + HEX[x & 0xff]!
  }
  return s
}

let scratch = new Uint8Array(256)

function room(length: number): Uint8Array {
  if (scratch.length < length + 2 * BLOCK) scratch = new Uint8Array(2 ** Math.ceil(Math.log2(length + 2 * BLOCK)))
  return scratch
}

/** SM3 digest of `data` (a string is hashed as UTF-8), as bytes. */
export function sm3(data: Uint8Array | string): Uint8Array {
  const v = Int32Array.from(IV)
  const length = load(data)
  finish(v, scratch, length, 0)
  const out = new Uint8Array(32)
  writeWords(v, out, 0, 32)
  return out
}

/** Copies `data` to the start of the scratch buffer; its length in bytes. */
function load(data: Uint8Array | string): number {
  if (typeof data === 'string') {
    const buf = room(data.length * 3)
    return utf8.encodeInto(data, buf).written
  }
  room(data.length).set(data)
  return data.length
}

const utf8 = new TextEncoder()

/** HMAC-SM3 (RFC 2104) under one key, with the key's pad blocks compressed once. */
export class Sm3Hmac {
  readonly #inner = Int32Array.from(IV)
  readonly #outer = Int32Array.from(IV)
  readonly #v = new Int32Array(WORDS)
  readonly #digest = new Uint8Array(32 + BLOCK + 8)

  constructor(key: Uint8Array) {
    const k = key.length > BLOCK ? sm3(key) : key
    const pad = new Uint8Array(BLOCK)
    for (let i = 0; i < BLOCK; i++) pad[i] = (k[i] ?? 0) ^ 0x36
    compress(this.#inner, pad, 0)
    for (let i = 0; i < BLOCK; i++) pad[i] = (k[i] ?? 0) ^ 0x5c
    compress(this.#outer, pad, 0)
  }

  #run(data: Uint8Array | string): Int32Array {
    const v = this.#v
    v.set(this.#inner)
    const length = load(data)
    finish(v, scratch, length, BLOCK)
    writeWords(v, this.#digest, 0, 32)
    v.set(this.#outer)
    finish(v, this.#digest, 32, BLOCK)
    return v
  }

  /** The MAC as lowercase hex. */
  hex(data: Uint8Array | string): string {
    return wordsHex(this.#run(data))
  }

  /** The first `bytes` bytes of the MAC, written into `out` at `at`. */
  into(data: Uint8Array | string, out: Uint8Array, at: number, bytes = 32): void {
    writeWords(this.#run(data), out, at, bytes)
  }
}
