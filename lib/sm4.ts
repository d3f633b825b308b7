// SM4 (GB/T 32907-2016) block encryption, for sealing plates on the hot path.
// OpenSSL has SM4 too, but a call into it (an update on a prepared ECB
// context, with the Buffer it returns) costs several times the cipher's own
// work on one block. Decryption is rare (an admin revealing a plate) and
// stays in OpenSSL, which also checks this code in lib/sm4.test.ts.
//
// The S-box is built from its algebraic form rather than typed in: with A the
// circulant bit matrix of row 0xA7 and inversion in GF(2^8) modulo
// x^8+x^7+x^6+x^5+x^4+x^2+1, S(x) = A·(A·x ⊕ 0xD3)^-1 ⊕ 0xD3. Like OpenSSL's
// portable SM4, it looks bytes up in a table (256 bytes, four cache lines).

const POLY = 0x1f5

function gfMul(a: number, b: number): number {
  let r = 0
  for (; b > 0; b >>= 1) {
    if (b & 1) r ^= a
    a <<= 1
    if (a & 0x100) a ^= POLY
  }
  return r
}

/** x^254 = x^-1 in GF(2^8); 0 maps to 0. */
function gfInverse(x: number): number {
  let result = 1
  let base = x
  for (let e = 254; e > 0; e >>= 1) {
    if (e & 1) result = gfMul(result, base)
    base = gfMul(base, base)
  }
  return x === 0 ? 0 : result
}

function affine(x: number): number {
  let y = 0
  for (let i = 0; i < 8; i++) {
    const row = ((0xa7 << i) | (0xa7 >> (8 - i))) & 0xff
    let bit = 0
    for (let v = row & x; v !== 0; v &= v - 1) bit ^= 1
    y |= bit << i
  }
  return y
}

const SBOX = new Uint8Array(256)
for (let x = 0; x < 256; x++) SBOX[x] = affine(gfInverse(affine(x) ^ 0xd3)) ^ 0xd3

const FK = [0xa3b1bac6 | 0, 0x56aa3350, 0x677d9197, 0xb27022dc | 0]
// CK[i] is the bytes (4i+j)·7 mod 256, j = 0..3, big-endian.
const CK = Array.from({ length: 32 }, (_, i) => {
  let w = 0
  for (let j = 0; j < 4; j++) w = (w << 8) | (((4 * i + j) * 7) & 0xff)
  return w
})

function rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n))
}

function tau(a: number): number {
  return (SBOX[a >>> 24]! << 24) | (SBOX[(a >>> 16) & 0xff]! << 16) | (SBOX[(a >>> 8) & 0xff]! << 8) | SBOX[a & 0xff]!
}

function readWord(b: Uint8Array, at: number): number {
  return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!
}

function writeWord(b: Uint8Array, at: number, w: number): void {
  b[at] = w >>> 24
  b[at + 1] = w >>> 16
  b[at + 2] = w >>> 8
  b[at + 3] = w
}

/** SM4 encryption under one 128-bit key, its 32 round keys expanded once. */
export class Sm4 {
  readonly #rk = new Int32Array(32)

  constructor(key: Uint8Array) {
    if (key.length !== 16) throw new Error(`SM4 key must be 16 bytes, got ${key.length}`)
    let k0 = readWord(key, 0) ^ FK[0]!
    let k1 = readWord(key, 4) ^ FK[1]!
    let k2 = readWord(key, 8) ^ FK[2]!
    let k3 = readWord(key, 12) ^ FK[3]!
    for (let i = 0; i < 32; i++) {
      const t = tau(k1 ^ k2 ^ k3 ^ CK[i]!)
      const next = k0 ^ t ^ rotl(t, 13) ^ rotl(t, 23)
      this.#rk[i] = next
      k0 = k1
      k1 = k2
      k2 = k3
      k3 = next
    }
  }

  /** Encrypts the 16 bytes at `block[at..at+16)` in place. */
  encryptBlock(block: Uint8Array, at: number): void {
    const rk = this.#rk
    let x0 = readWord(block, at)
    let x1 = readWord(block, at + 4)
    let x2 = readWord(block, at + 8)
    let x3 = readWord(block, at + 12)
    for (let i = 0; i < 32; i++) {
      const t = tau(x1 ^ x2 ^ x3 ^ rk[i]!)
      const next = x0 ^ t ^ rotl(t, 2) ^ rotl(t, 10) ^ rotl(t, 18) ^ rotl(t, 24)
      x0 = x1
      x1 = x2
      x2 = x3
      x3 = next
    }
    // The output is the last four words in reverse order.
    writeWord(block, at, x3)
    writeWord(block, at + 4, x2)
    writeWord(block, at + 8, x1)
    writeWord(block, at + 12, x0)
  }
}
