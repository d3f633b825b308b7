// Hand-built car parks for the analytics tests (parking.int.test.ts and
// api/analytics.int.test.ts), in Asia/Shanghai local time. The figures the
// tests expect are worked out by hand in parking.int.test.ts.
//
// D1 = Mon 2026-11-02, D2 = Tue 2026-11-03; the figures are computed up to
// D3 (2026-11-04) 00:00. Session cap 24 h.
//
// P1 (source fx-parking, district 横琴), capacity 4, 6 from D2 12:00, no
// free-space snapshots (occupancy from the running count):
//   F  in D1 00:00, never out                      capped (closed D2 00:00)
//   A  in D1 08:00, out D1 10:30, 5.00 yuan        matched 150 min
//   B  in D1 09:00, out D1 09:45, 3.00             matched 45 min
//   H  in D1 09:15, out D1 09:30, 1.00             matched 15 min
//   I  in D1 09:20, out D1 09:40, 1.00             matched 20 min (count 5 > capacity 4)
//   X  out D1 11:00, 2.00 (never came in)          exit_only (count 1 → 0)
//   Z  out D1 12:00, no fee                        exit_only (count stays 0)
//   C  in D1 20:00, out D2 08:00, 15.00            matched 720 min (overnight)
//   D  in D2 07:30, out D2 18:00, 20.00            matched 630 min
//   Y  out D2 09:00, 8.00                          exit_only (count 1 → 0 although D is in)
//   —  in D2 10:00 without plate                   entry_only
//   —  out D2 11:00 without plate, 3.00            exit_only
//   E  in D2 13:00                                 open (11 h old at D3 00:00)
//   G  in D2 14:00, in D2 16:00, out D2 17:00, 1.00  entry_only, matched 60 min
// P2 (fx-parking, 横琴), capacity 10, free-space snapshots: D1 00:00 free 10,
//   08:00 free 4, 12:00 free 7, 18:00 free 12 of its own capacity 12;
//   Q in D1 09:00, out D1 10:00, 6.00 (its count is not used: snapshots are).
// P3 (source fx-other, whose district is 香洲; the lot names none), capacity 2:
//   R in D1 10:00, out D1 14:00, 4.00.

import { parseLocal } from '../../lib/local-time.ts'
import { toJsonEachRow, type Warehouse } from '../../pipelines/warehouse/warehouse.ts'

export const TZ = 'Asia/Shanghai'
export const CAP_MS = 24 * 3_600_000

/** Epoch ms of a local time 'YYYY-MM-DD HH:mm'. */
export function L(local: string): number {
  return parseLocal(`${local}:00`, TZ)!
}

export const NOW = L('2026-11-04 00:00')

type Row = Record<string, unknown>
let seq = 0

function passage(sourceId: string, lotId: string, plate: string | null, direction: 'entry' | 'exit', at: string, feeCents: number | null = null): Row {
  seq++
  return {
    sourceId, eventId: `${lotId}-${direction}-${seq}`, occurredAt: L(at), receivedAt: L(at), lotId, recordNo: String(seq), direction, gateId: null,
    plateKey: plate === null ? null : `key-${plate}`, plateCipher: null, plateMasked: null, plateType: null, isBackfill: false, feeCents, entryAt: null,
  }
}

function lot(sourceId: string, lotId: string, at: string, capacity: number, district: string | null): Row {
  return {
    sourceId, eventId: `${lotId}-lot-${at}`, occurredAt: L(at), receivedAt: L(at), lotId, name: `停车场 ${lotId}`, capacity,
    lat: null, lon: null, coordSystem: null, district, address: null, openingHours: '24/7',
  }
}

function snapshot(sourceId: string, lotId: string, at: string, free: number, capacity: number | null = null): Row {
  return { sourceId, eventId: `${lotId}-space-${at}`, occurredAt: L(at), receivedAt: L(at), lotId, free, capacity, status: 'open' }
}

const P = 'fx-parking'

/** P1's exit of C, the one the incremental test lands last. */
export const LATE_EXIT = passage(P, 'P1', 'C', 'exit', '2026-11-03 08:00', 1500)

export const PASSAGES: Row[] = [
  passage(P, 'P1', 'F', 'entry', '2026-11-02 00:00'),
  passage(P, 'P1', 'A', 'entry', '2026-11-02 08:00'),
  passage(P, 'P1', 'A', 'exit', '2026-11-02 10:30', 500),
  passage(P, 'P1', 'B', 'entry', '2026-11-02 09:00'),
  passage(P, 'P1', 'B', 'exit', '2026-11-02 09:45', 300),
  passage(P, 'P1', 'H', 'entry', '2026-11-02 09:15'),
  passage(P, 'P1', 'H', 'exit', '2026-11-02 09:30', 100),
  passage(P, 'P1', 'I', 'entry', '2026-11-02 09:20'),
  passage(P, 'P1', 'I', 'exit', '2026-11-02 09:40', 100),
  passage(P, 'P1', 'X', 'exit', '2026-11-02 11:00', 200),
  passage(P, 'P1', 'Z', 'exit', '2026-11-02 12:00'),
  passage(P, 'P1', 'C', 'entry', '2026-11-02 20:00'),
  LATE_EXIT,
  passage(P, 'P1', 'D', 'entry', '2026-11-03 07:30'),
  passage(P, 'P1', 'D', 'exit', '2026-11-03 18:00', 2000),
  passage(P, 'P1', 'Y', 'exit', '2026-11-03 09:00', 800),
  passage(P, 'P1', null, 'entry', '2026-11-03 10:00'),
  passage(P, 'P1', null, 'exit', '2026-11-03 11:00', 300),
  passage(P, 'P1', 'E', 'entry', '2026-11-03 13:00'),
  passage(P, 'P1', 'G', 'entry', '2026-11-03 14:00'),
  passage(P, 'P1', 'G', 'entry', '2026-11-03 16:00'),
  passage(P, 'P1', 'G', 'exit', '2026-11-03 17:00', 100),
  passage(P, 'P2', 'Q', 'entry', '2026-11-02 09:00'),
  passage(P, 'P2', 'Q', 'exit', '2026-11-02 10:00', 600),
  passage('fx-other', 'P3', 'R', 'entry', '2026-11-02 10:00'),
  passage('fx-other', 'P3', 'R', 'exit', '2026-11-02 14:00', 400),
]

export const CAPACITY_CHANGE = lot(P, 'P1', '2026-11-03 12:00', 6, '横琴')

export const LOTS: Row[] = [lot(P, 'P1', '2026-11-01 00:00', 4, '横琴'), CAPACITY_CHANGE, lot(P, 'P2', '2026-11-01 00:00', 10, '横琴'), lot('fx-other', 'P3', '2026-11-01 00:00', 2, null)]

export const SNAPSHOTS: Row[] = [
  snapshot(P, 'P2', '2026-11-02 00:00', 10),
  snapshot(P, 'P2', '2026-11-02 08:00', 4),
  snapshot(P, 'P2', '2026-11-02 12:00', 7),
  snapshot(P, 'P2', '2026-11-02 18:00', 12, 12),
]

export async function land(wh: Warehouse, table: string, rows: readonly Row[]): Promise<void> {
  if (rows.length > 0) await wh.insertJsonEachRow(table, toJsonEachRow(rows))
}

/** Everything at once. */
export async function landAll(wh: Warehouse): Promise<void> {
  await land(wh, 'parking_lot', LOTS)
  await land(wh, 'parking_occupancy', SNAPSHOTS)
  await land(wh, 'parking_passage', PASSAGES)
}
