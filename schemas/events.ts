// Canonical events. The .avsc files beside this module are the source of truth
// for the wire; these types mirror them field for field (schemas/catalogue.test.ts
// checks that every declared field exists in the Avro schema).
//
// Every timestamp is epoch milliseconds, UTC. `occurredAt` is the source's own
// time (never replaced by the time of arrival); `receivedAt` is when citysync
// read it.

export const EVENT_NAMES = [
  'ParkingLot',
  'ParkingOccupancy',
  'ParkingPassage',
  'FerrySailing',
  'FerryTicket',
  'FerryCheckIn',
  'BikeStationStatus',
  'BikeVehicleStatus',
  'BikeOperatorStatus',
  'SourceHeartbeat',
  'IngestError',
  // Appended, not grouped with the bike events: wire ids follow this order.
  'BikeStation',
  'BikeTrip',
] as const
export type EventName = (typeof EVENT_NAMES)[number]

export interface EventBase {
  sourceId: string
  /** Deterministic: the same upstream record always gets the same id. */
  eventId: string
  occurredAt: number
  receivedAt: number
}

export const COORD_SYSTEMS = ['WGS84', 'GCJ02', 'BD09'] as const
export type CoordSystem = (typeof COORD_SYSTEMS)[number]

export interface ParkingLot extends EventBase {
  lotId: string
  name: string
  capacity: number
  lat: number | null
  lon: number | null
  coordSystem: CoordSystem | null
  district: string | null
  address: string | null
  /** OSM opening_hours syntax, e.g. "24/7" or "Mo-Su 07:00-22:00". */
  openingHours: string | null
}

export const OCCUPANCY_STATUSES = ['open', 'full', 'closed', 'unknown'] as const
export type OccupancyStatus = (typeof OCCUPANCY_STATUSES)[number]

export interface ParkingOccupancy extends EventBase {
  lotId: string
  free: number
  capacity: number | null
  status: OccupancyStatus
}

export const DIRECTIONS = ['entry', 'exit'] as const
export type Direction = (typeof DIRECTIONS)[number]

export interface ParkingPassage extends EventBase {
  lotId: string
  recordNo: string
  direction: Direction
  gateId: string | null
  /** Keyed hash of the normalised plate: joins an entry to its exit, reveals nothing. */
  plateKey: string | null
  /** Reversible, encrypted copy of the plate (hex); only admins may reveal it. */
  plateCipher: string | null
  /** Display form, e.g. 粤C·***45. */
  plateMasked: string | null
  plateType: string | null
  /** Record uploaded after the fact (补传) rather than live. */
  isBackfill: boolean
  /** Fee charged at exit, in fen (1/100 yuan). */
  feeCents: number | null
  /** On exits, the entry time the vendor reports, if any. */
  entryAt: number | null
}

export const SAILING_STATUSES = ['scheduled', 'boarding', 'departed', 'arrived', 'delayed', 'cancelled'] as const
export type SailingStatus = (typeof SAILING_STATUSES)[number]

export interface FerrySailing extends EventBase {
  sailingId: string
  terminalId: string
  route: string
  vesselName: string | null
  scheduledDeparture: number
  actualDeparture: number | null
  capacity: number | null
  status: SailingStatus
}

export const TICKET_STATUSES = ['sold', 'refunded', 'changed'] as const
export type TicketStatus = (typeof TICKET_STATUSES)[number]

export interface FerryTicket extends EventBase {
  ticketId: string
  sailingId: string
  terminalId: string
  ticketType: string
  priceCents: number | null
  channel: string | null
  status: TicketStatus
}

export interface FerryCheckIn extends EventBase {
  checkInId: string
  ticketId: string
  sailingId: string
  terminalId: string
  gate: string | null
}

export interface BikeStationStatus extends EventBase {
  operatorId: string
  stationId: string
  vehiclesAvailable: number
  docksAvailable: number | null
  isInstalled: boolean
  isRenting: boolean
  isReturning: boolean
}

export interface BikeVehicleStatus extends EventBase {
  operatorId: string
  vehicleId: string
  lat: number | null
  lon: number | null
  stationId: string | null
  vehicleTypeId: string | null
  isReserved: boolean
  isDisabled: boolean
}

export interface BikeOperatorStatus extends EventBase {
  operatorId: string
  fleetSize: number
  vehiclesReporting: number
}

export interface BikeStation extends EventBase {
  operatorId: string
  stationId: string
  name: string
  lat: number
  lon: number
  capacity: number | null
  coordSystem: CoordSystem
}

export interface BikeTrip extends EventBase {
  operatorId: string
  tripId: string
  vehicleId: string
  startedAt: number
  /** Equals occurredAt. */
  endedAt: number
  startLat: number | null
  startLon: number | null
  endLat: number | null
  endLon: number | null
  coordSystem: CoordSystem | null
  durationS: number
  distanceM: number | null
  /** Fen (1/100 yuan). */
  feeCents: number | null
  /** Uploaded after the fact (补传) rather than live. */
  isBackfill: boolean
}

export const HEARTBEAT_STATUSES = ['ok', 'empty', 'error'] as const
export type HeartbeatStatus = (typeof HEARTBEAT_STATUSES)[number]

export interface SourceHeartbeat extends EventBase {
  status: HeartbeatStatus
  itemsRead: number
  latencyMs: number | null
  message: string | null
}

export interface IngestError extends EventBase {
  stage: string
  code: string
  reason: string
  family: string | null
  raw: string
}

export interface EventTypes {
  ParkingLot: ParkingLot
  ParkingOccupancy: ParkingOccupancy
  ParkingPassage: ParkingPassage
  FerrySailing: FerrySailing
  FerryTicket: FerryTicket
  FerryCheckIn: FerryCheckIn
  BikeStationStatus: BikeStationStatus
  BikeVehicleStatus: BikeVehicleStatus
  BikeOperatorStatus: BikeOperatorStatus
  SourceHeartbeat: SourceHeartbeat
  IngestError: IngestError
  BikeStation: BikeStation
  BikeTrip: BikeTrip
}

export type AnyEvent = EventTypes[EventName]

/**
 * Where each event travels and lands: the bus topic (one per family) and the
 * ClickHouse table. `key` lists the fields that identify one upstream record;
 * the eventId is derived from them.
 */
export const EVENT_ROUTES: Record<EventName, { topic: string; table: string; key: readonly string[] }> = {
  ParkingLot: { topic: 'citysync.parking.lot', table: 'parking_lot', key: ['lotId', 'occurredAt'] },
  ParkingOccupancy: { topic: 'citysync.parking.occupancy', table: 'parking_occupancy', key: ['lotId', 'occurredAt'] },
  ParkingPassage: { topic: 'citysync.parking.passage', table: 'parking_passage', key: ['lotId', 'direction', 'recordNo'] },
  FerrySailing: { topic: 'citysync.ferry.sailing', table: 'ferry_sailing', key: ['sailingId', 'status', 'occurredAt'] },
  FerryTicket: { topic: 'citysync.ferry.ticket', table: 'ferry_ticket', key: ['ticketId', 'status'] },
  FerryCheckIn: { topic: 'citysync.ferry.checkin', table: 'ferry_checkin', key: ['checkInId'] },
  BikeStationStatus: { topic: 'citysync.bike.station', table: 'bike_station_status', key: ['operatorId', 'stationId', 'occurredAt'] },
  BikeVehicleStatus: { topic: 'citysync.bike.vehicle', table: 'bike_vehicle_status', key: ['operatorId', 'vehicleId', 'occurredAt'] },
  BikeOperatorStatus: { topic: 'citysync.bike.operator', table: 'bike_operator_status', key: ['operatorId', 'occurredAt'] },
  SourceHeartbeat: { topic: 'citysync.heartbeat', table: 'source_heartbeat', key: ['occurredAt'] },
  IngestError: { topic: 'citysync.ingest-error', table: 'dead_letter', key: ['stage', 'code', 'raw'] },
  BikeStation: { topic: 'citysync.bike.station-info', table: 'bike_station', key: ['operatorId', 'stationId', 'occurredAt'] },
  BikeTrip: { topic: 'citysync.bike.trip', table: 'bike_trip', key: ['operatorId', 'tripId'] },
}

/**
 * What a connector hands over: the canonical event minus what the pipeline
 * fills in (source id, event id, arrival time, protected plate fields).
 * Passages carry the plate in clear here; it is protected before it leaves
 * the process and is never written anywhere in clear.
 */
export type Draft<N extends EventName> = N extends 'ParkingPassage'
  ? Omit<ParkingPassage, 'sourceId' | 'eventId' | 'receivedAt' | 'plateKey' | 'plateCipher' | 'plateMasked'> & {
      plate: string | null
    }
  : Omit<EventTypes[N], 'sourceId' | 'eventId' | 'receivedAt'>
