import { bikeShareConnector } from './bike-share/connector.ts'
import { ferryTicketingConnector } from './ferry-ticketing/connector.ts'
import { countyDbConnector } from './county-feeds/db.ts'
import { countyFilesConnector } from './county-feeds/files.ts'
import { parkingDbConnector } from './parking-lots/db-pull.ts'
import { parkingLotsConnector } from './parking-lots/connector.ts'
import { parkingPushConnector } from './parking-lots/push.ts'
import { type Connector, type JsonSchema } from './sdk/connector.ts'

/** Every source kind citysync can run. A new kind is one folder and one line here. */
export const CONNECTORS: Record<string, Connector<unknown, unknown>> = {
  [parkingLotsConnector.kind]: parkingLotsConnector,
  [bikeShareConnector.kind]: bikeShareConnector,
  [parkingDbConnector.kind]: parkingDbConnector,
  [countyFilesConnector.kind]: countyFilesConnector,
  [countyDbConnector.kind]: countyDbConnector,
  [parkingPushConnector.kind]: parkingPushConnector,
  [ferryTicketingConnector.kind]: ferryTicketingConnector,
}

export function connectorFor(kind: string): Connector<unknown, unknown> | undefined {
  return CONNECTORS[kind]
}

export function configSchemaFor(kind: string): JsonSchema | undefined {
  return CONNECTORS[kind]?.configSchema
}
