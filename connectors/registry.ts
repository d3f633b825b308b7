import { parkingLotsConnector } from './parking-lots/connector.ts'
import { type Connector, type JsonSchema } from './sdk/connector.ts'

/** Every source kind citysync can run. A new kind is one folder and one line here. */
export const CONNECTORS: Record<string, Connector<unknown, unknown>> = {
  [parkingLotsConnector.kind]: parkingLotsConnector,
}

export function connectorFor(kind: string): Connector<unknown, unknown> | undefined {
  return CONNECTORS[kind]
}

export function configSchemaFor(kind: string): JsonSchema | undefined {
  return CONNECTORS[kind]?.configSchema
}
