import { randomBytes } from 'node:crypto'

// An Avro object container file (Avro 1.11 spec, "Object Container Files"):
// magic, a metadata map naming the writer schema and the codec, a 16-byte
// sync marker, then blocks of (count, byte size, datums, sync marker). The
// datums are the bodies of wire messages as they are, so a batch becomes a
// file ClickHouse reads natively (FORMAT Avro) without the sink re-encoding
// a single row.

const MAGIC = Buffer.from([0x4f, 0x62, 0x6a, 0x01]) // "Obj" 1

/** Datums written with one schema, ready to go into a container. */
export interface AvroBlock {
  /** The writer schema, as JSON text. */
  schema: string
  /** Its top-level field names: the table's columns they fill, by name. */
  columns: readonly string[]
  /** Avro binary bodies, one per row (no wire header). */
  datums: Buffer[]
  /** Sum of the datums' lengths. */
  bytes: number
}

/** Avro's variable-length zig-zag long, for the non-negative sizes a container header holds. */
function long(n: number): Buffer {
  const out: number[] = []
  let v = n * 2
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return Buffer.from(out)
}

function bytes(b: Buffer): Buffer[] {
  return [long(b.length), b]
}

/** The whole file for one block. */
export function avroContainer(block: AvroBlock): Buffer {
  const sync = randomBytes(16)
  return Buffer.concat([
    MAGIC,
    long(2),
    ...bytes(Buffer.from('avro.schema')),
    ...bytes(Buffer.from(block.schema)),
    ...bytes(Buffer.from('avro.codec')),
    ...bytes(Buffer.from('null')),
    long(0),
    sync,
    long(block.datums.length),
    long(block.bytes),
    ...block.datums,
    sync,
  ])
}
