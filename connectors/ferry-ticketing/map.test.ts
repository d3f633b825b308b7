import { describe, expect, it } from 'vitest'
import {
  type ItemFault,
  type MapContext,
  type Mapped,
  channelOf,
  comparePositions,
  epochToMs,
  itemPosition,
  mapCheckIn,
  mapSailing,
  mapTicket,
  unknownTicket,
  yuanToCents,
} from './map.ts'

// Rows as the ticketing system sends them (Asia/Shanghai naive times).
const NOW = Date.parse('2026-11-21T04:00:00Z') // 12:00 in Shanghai
const ctx: MapContext = {
  timezone: 'Asia/Shanghai',
  now: NOW,
  futureToleranceMs: 300_000,
  knownTerminals: new Set(['HQT', 'JZG']),
}
const at = (local: string) => Date.parse(`${local.replace(' ', 'T')}+08:00`)

const SAILING = {
  sailingId: 'HQT-HKK-20261121-1130',
  terminalCode: 'HQT',
  routeCode: 'HQT-HKK',
  routeName: '横琴—香港中港城',
  sailDate: '2026-11-21',
  sailTime: '11:30',
  vesselName: '横琴之星',
  seats: 248,
  sailStatus: 2,
  actualDepartTime: 1795231982000,
  updateTime: '2026-11-21 11:33:02',
}

const TICKET = {
  ticketNo: 'HQT26112100417',
  orderNo: 'O2026112112345678',
  sailingId: 'HQT-HKK-20261121-1330',
  origSailingId: null,
  terminalCode: 'HQT',
  ticketType: 'ADULT',
  ticketPrice: '175.00',
  saleChannel: 'MINIAPP',
  ticketStatus: 1,
  saleTime: '2026-11-21 09:12:33',
  changeTime: null,
  refundTime: null,
  isResend: 0,
  updateTime: '2026-11-21 09:12:33',
}

const CHECKIN = {
  checkinId: 'CKJZG261121000812',
  ticketNo: 'JZG26112100388',
  sailingId: 'JZG-HKM-20261121-1100',
  terminalCode: 'JZG',
  gateNo: 'A1',
  checkTime: 1795229103, // epoch seconds: an old turnstile
  isResend: 0,
  updateTime: '2026-11-21 10:44:18',
}

function fault<T>(r: Mapped<T>): ItemFault {
  if (r.ok) throw new Error(`expected a fault, got ${JSON.stringify(r.draft)}`)
  return r.fault
}

function draft<T>(r: Mapped<T>): T {
  if (!r.ok) throw new Error(`expected a draft, got ${JSON.stringify(r.fault)}`)
  return r.draft
}

describe('mapSailing', () => {
  it('maps a departed sailing, reading naive local times in the source zone', () => {
    expect(draft(mapSailing(SAILING, ctx))).toEqual({
      occurredAt: at('2026-11-21 11:33:02'),
      sailingId: 'HQT-HKK-20261121-1130',
      terminalId: 'HQT',
      route: 'HQT-HKK',
      vesselName: '横琴之星',
      scheduledDeparture: at('2026-11-21 11:30:00'),
      actualDeparture: 1795231982000,
      capacity: 248,
      status: 'departed',
    })
  })

  it('reads every status code, also as a numeric string', () => {
    const statuses = [0, 1, 2, 3, 4, 5].map((c) => draft(mapSailing({ ...SAILING, sailStatus: String(c) }, ctx)).status)
    expect(statuses).toEqual(['scheduled', 'boarding', 'departed', 'arrived', 'delayed', 'cancelled'])
  })

  it('reads actualDepartTime in epoch seconds as well as milliseconds', () => {
    expect(draft(mapSailing({ ...SAILING, actualDepartTime: 1795231982 }, ctx)).actualDeparture).toBe(1795231982000)
    expect(draft(mapSailing({ ...SAILING, actualDepartTime: '1795231982000' }, ctx)).actualDeparture).toBe(1795231982000)
    expect(draft(mapSailing({ ...SAILING, actualDepartTime: null }, ctx)).actualDeparture).toBeNull()
  })

  it('takes "unknown" seats and a missing vessel as not known yet', () => {
    const d = draft(mapSailing({ ...SAILING, sailStatus: 0, vesselName: null, seats: 'unknown', actualDepartTime: null }, ctx))
    expect(d).toMatchObject({ vesselName: null, capacity: null, status: 'scheduled' })
    expect(draft(mapSailing({ ...SAILING, seats: '310' }, ctx)).capacity).toBe(310)
    expect(draft(mapSailing({ ...SAILING, sailTime: '11:30:00' }, ctx)).scheduledDeparture).toBe(at('2026-11-21 11:30:00'))
  })

  it('gives each status change its own occurredAt, the row updateTime', () => {
    const boarding = draft(mapSailing({ ...SAILING, sailStatus: 1, actualDepartTime: null, updateTime: '2026-11-21 11:00:00' }, ctx))
    const departed = draft(mapSailing(SAILING, ctx))
    expect(departed.occurredAt - boarding.occurredAt).toBe(33 * 60_000 + 2000)
  })

  it.each([
    ['no sailDate', { sailDate: undefined }, 'missing_field', 'sailDate'],
    ['an unknown status code', { sailStatus: 9 }, 'invalid_value', 'sailStatus'],
    ['a status that is not a number', { sailStatus: 'DEPARTED' }, 'invalid_value', 'sailStatus'],
    ['seats that are not a number', { seats: 'many' }, 'invalid_value', 'seats'],
    ['negative seats', { seats: -1 }, 'invalid_value', 'seats'],
    ['a bad sailTime', { sailTime: '1130' }, 'invalid_value', 'sailTime'],
    ['an impossible date', { sailDate: '2026-02-30' }, 'invalid_value', 'sailDate'],
    ['an epoch that is not one', { actualDepartTime: 'yesterday' }, 'invalid_value', 'actualDepartTime'],
    ['an unknown terminal', { terminalCode: 'ZHW' }, 'unknown_terminal', 'terminalCode'],
    ['an updateTime in the future', { updateTime: '2026-11-21 12:30:00' }, 'future_timestamp', 'updateTime'],
    ['a routeCode of the wrong type', { routeCode: 12 }, 'wrong_type', 'routeCode'],
  ] as const)('rejects %s', (_name, patch, code, field) => {
    expect(fault(mapSailing({ ...SAILING, ...patch }, ctx))).toMatchObject({ code, field })
  })

  it('rejects a row that is not an object', () => {
    expect(fault(mapSailing([1, 2], ctx))).toEqual({ code: 'wrong_type', field: null, reason: 'row must be an object, got array' })
  })
})

describe('mapTicket', () => {
  const base = { ticketId: 'HQT26112100417', terminalId: 'HQT', ticketType: 'adult', priceCents: 17500, channel: 'mini-program' }

  it('maps a sold ticket to one sold event at its sale time', () => {
    expect(draft(mapTicket(TICKET, ctx))).toEqual([
      { occurredAt: at('2026-11-21 09:12:33'), sailingId: 'HQT-HKK-20261121-1330', ...base, status: 'sold' },
    ])
  })

  it('turns a changed-then-refunded row into sold, changed and refunded events, each on its sailing', () => {
    const row = {
      ...TICKET,
      sailingId: 'HQT-HKK-20261121-1530',
      origSailingId: 'HQT-HKK-20261121-1330',
      ticketStatus: 2,
      changeTime: '2026-11-21 10:01:00',
      refundTime: '2026-11-21 11:45:10',
      updateTime: '2026-11-21 11:45:10',
    }
    expect(draft(mapTicket(row, ctx))).toEqual([
      { occurredAt: at('2026-11-21 09:12:33'), sailingId: 'HQT-HKK-20261121-1330', ...base, status: 'sold' },
      { occurredAt: at('2026-11-21 10:01:00'), sailingId: 'HQT-HKK-20261121-1530', ...base, status: 'changed' },
      { occurredAt: at('2026-11-21 11:45:10'), sailingId: 'HQT-HKK-20261121-1530', ...base, status: 'refunded' },
    ])
  })

  it('yields the sold event with the same content whichever later row it is read from', () => {
    const sold = draft(mapTicket(TICKET, ctx))[0]
    const changed = draft(
      mapTicket({ ...TICKET, sailingId: 'X-1', origSailingId: TICKET.sailingId, ticketStatus: 3, changeTime: '2026-11-21 10:00:00' }, ctx),
    )[0]
    expect(JSON.stringify(changed)).toBe(JSON.stringify(sold))
  })

  it('reads prices as strings or numbers in yuan, and "unknown" as no price', () => {
    expect(draft(mapTicket({ ...TICKET, ticketPrice: 87.5 }, ctx))[0]!.priceCents).toBe(8750)
    expect(draft(mapTicket({ ...TICKET, ticketPrice: 175 }, ctx))[0]!.priceCents).toBe(17500)
    expect(draft(mapTicket({ ...TICKET, ticketPrice: 'unknown' }, ctx))[0]!.priceCents).toBeNull()
    expect(draft(mapTicket({ ...TICKET, ticketPrice: 'UNKNOWN' }, ctx))[0]!.priceCents).toBeNull()
  })

  it('names channels and lower-cases ticket types', () => {
    expect(draft(mapTicket({ ...TICKET, saleChannel: 'WINDOW', ticketType: 'CHILD' }, ctx))[0]).toMatchObject({ channel: 'window', ticketType: 'child' })
    expect(draft(mapTicket({ ...TICKET, saleChannel: null }, ctx))[0]!.channel).toBeNull()
    expect(channelOf('TRAVEL_AGENCY')).toBe('travel_agency')
  })

  it.each([
    ['no sailingId', { sailingId: undefined }, 'missing_field', 'sailingId'],
    ['a negative price', { ticketPrice: '-175.00' }, 'invalid_value', 'ticketPrice'],
    ['a price with three decimals', { ticketPrice: 17.555 }, 'invalid_value', 'ticketPrice'],
    ['a price of the wrong type', { ticketPrice: { yuan: 1 } }, 'wrong_type', 'ticketPrice'],
    ['an unknown status', { ticketStatus: 7 }, 'invalid_value', 'ticketStatus'],
    ['a sale time a day ahead (kiosk clock)', { saleTime: '2026-11-22 09:12:33' }, 'future_timestamp', 'saleTime'],
    ['an unknown terminal', { terminalCode: 'ZHW' }, 'unknown_terminal', 'terminalCode'],
    ['a refunded row without refundTime', { ticketStatus: 2 }, 'missing_field', 'refundTime'],
    ['a changed row without changeTime', { ticketStatus: 3 }, 'missing_field', 'changeTime'],
    ['a change without the original sailing', { ticketStatus: 3, changeTime: '2026-11-21 10:00:00' }, 'missing_field', 'origSailingId'],
    ['a sold row with a refundTime', { refundTime: '2026-11-21 10:00:00' }, 'invalid_value', 'ticketStatus'],
    ['a refund before the sale', { ticketStatus: 2, refundTime: '2026-11-21 08:00:00' }, 'invalid_value', 'refundTime'],
  ] as const)('rejects %s', (_name, patch, code, field) => {
    expect(fault(mapTicket({ ...TICKET, ...patch }, ctx))).toMatchObject({ code, field })
  })
})

describe('mapCheckIn', () => {
  it('maps a check-in, reading an epoch in seconds', () => {
    expect(draft(mapCheckIn(CHECKIN, ctx))).toEqual({
      occurredAt: 1795229103000,
      checkInId: 'CKJZG261121000812',
      ticketId: 'JZG26112100388',
      sailingId: 'JZG-HKM-20261121-1100',
      terminalId: 'JZG',
      gate: 'A1',
    })
    expect(draft(mapCheckIn({ ...CHECKIN, checkTime: 1795229103000 }, ctx)).occurredAt).toBe(1795229103000)
  })

  it('keeps a gate clock a few minutes fast, within the tolerance', () => {
    expect(draft(mapCheckIn({ ...CHECKIN, checkTime: NOW + 180_000 }, ctx)).occurredAt).toBe(NOW + 180_000)
  })

  it.each([
    ['an "unknown" checkTime', { checkTime: 'unknown' }, 'invalid_value', 'checkTime'],
    ['no checkTime', { checkTime: null }, 'missing_field', 'checkTime'],
    ['a checkTime a day ahead', { checkTime: 1795229103 + 86_400 }, 'future_timestamp', 'checkTime'],
    ['no ticketNo', { ticketNo: undefined }, 'missing_field', 'ticketNo'],
    ['a checkTime out of range', { checkTime: 12345 }, 'invalid_value', 'checkTime'],
  ] as const)('rejects %s', (_name, patch, code, field) => {
    expect(fault(mapCheckIn({ ...CHECKIN, ...patch }, ctx))).toMatchObject({ code, field })
  })

  it('has a fault for a ticket the system does not know', () => {
    expect(unknownTicket('JZG2611219123')).toEqual({
      code: 'unknown_ticket',
      field: 'ticketNo',
      reason: 'ticketNo "JZG2611219123" is not a ticket of this source',
    })
  })
})

describe('helpers', () => {
  it('tells epoch seconds from milliseconds', () => {
    expect(epochToMs(1795229103, 't')).toBe(1795229103000)
    expect(epochToMs(1795229103.25, 't')).toBe(1795229103250)
    expect(epochToMs('1795229103123', 't')).toBe(1795229103123)
    expect(() => epochToMs(-5, 't')).toThrow(/not an epoch time/)
  })

  it('converts yuan to fen', () => {
    expect(yuanToCents('265.00')).toBe(26500)
    expect(yuanToCents('12.5')).toBe(1250)
    expect(yuanToCents('')).toBeNull()
    expect(() => yuanToCents('12,50')).toThrow(/not an amount in yuan/)
  })

  it('places a row by (updateTime, id) in the source zone', () => {
    const p = draft(itemPosition(TICKET, 'tickets', 'Asia/Shanghai'))
    expect(p).toEqual({ id: 'HQT26112100417', ts: at('2026-11-21 09:12:33'), local: '2026-11-21 09:12:33' })
    expect(draft(itemPosition({ ...TICKET, updateTime: '2026/11/21 09:12:33' }, 'tickets', 'Asia/Shanghai')).local).toBe('2026-11-21 09:12:33')
    expect(fault(itemPosition({ ...TICKET, updateTime: 'now' }, 'tickets', 'Asia/Shanghai'))).toMatchObject({ code: 'invalid_value', field: 'updateTime' })
    expect(fault(itemPosition(SAILING, 'tickets', 'Asia/Shanghai'))).toMatchObject({ code: 'missing_field', field: 'ticketNo' })
    expect(comparePositions({ ts: 1, id: 'B' }, { ts: 1, id: 'A' })).toBeGreaterThan(0)
    expect(comparePositions({ ts: 1, id: 'Z' }, { ts: 2, id: 'A' })).toBeLessThan(0)
  })
})
