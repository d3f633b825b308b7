import { readFileSync } from 'node:fs'
import { type KafkaConfig, type SASLOptions } from 'kafkajs'
import { CitysyncError } from '../../lib/errors.ts'

/**
 * How to reach a Kafka cluster, from the environment:
 *
 *   KAFKA_BROKERS          host:port[,host:port...]            (required)
 *   KAFKA_CLIENT_ID        client id shown in broker logs       (default citysync)
 *   KAFKA_SSL              true to use TLS
 *   KAFKA_SSL_CA           PEM file of the CA that signed the brokers' certificates
 *   KAFKA_SASL_MECHANISM   plain | scram-sha-256 | scram-sha-512
 *   KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD
 *   KAFKA_SESSION_TIMEOUT_MS  how long a silent pipeline keeps its partitions (default
 *                          30000; lower means faster take-over after a crash, min 6000)
 *   KAFKA_TOPIC_PREFIX     prepended to every topic, for a cluster shared by several
 *                          deployments (e.g. "nantong." gives nantong.citysync.parking.passage)
 *
 * The producer runs on librdkafka (node-rdkafka) and the consumers on kafkajs
 * (docs/decisions.md says why); both get their settings from here.
 */
export interface KafkaConnection {
  brokers: string[]
  clientId: string
  ssl: boolean
  sslCaFile: string | undefined
  sasl: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string } | undefined
  topicPrefix: string
  sessionTimeoutMs: number
}

const MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const

export function kafkaConnection(brokers: readonly string[], env: NodeJS.ProcessEnv = process.env): KafkaConnection {
  if (brokers.length === 0) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', ['KAFKA_BROKERS is empty'])
  const mechanism = env.KAFKA_SASL_MECHANISM?.trim().toLowerCase()
  let sasl: KafkaConnection['sasl']
  if (mechanism) {
    if (!(MECHANISMS as readonly string[]).includes(mechanism)) {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`KAFKA_SASL_MECHANISM must be one of ${MECHANISMS.join(', ')}, got "${mechanism}"`])
    }
    const username = env.KAFKA_SASL_USERNAME ?? ''
    const password = env.KAFKA_SASL_PASSWORD ?? ''
    if (!username || !password) {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', ['KAFKA_SASL_MECHANISM is set: KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required'])
    }
    sasl = { mechanism: mechanism as (typeof MECHANISMS)[number], username, password }
  }
  return {
    brokers: [...brokers],
    clientId: env.KAFKA_CLIENT_ID?.trim() || 'citysync',
    ssl: /^(1|true|yes)$/i.test(env.KAFKA_SSL ?? ''),
    sslCaFile: env.KAFKA_SSL_CA?.trim() || undefined,
    sasl,
    topicPrefix: env.KAFKA_TOPIC_PREFIX?.trim() ?? '',
    sessionTimeoutMs: Math.max(6_000, Number(env.KAFKA_SESSION_TIMEOUT_MS ?? 30_000) || 30_000),
  }
}

/** kafkajs client settings (consumers, admin). */
export function kafkajsConfig(c: KafkaConnection): KafkaConfig {
  const ssl = c.ssl ? (c.sslCaFile ? { ca: [readFileSync(c.sslCaFile, 'utf8')] } : true) : undefined
  return {
    clientId: c.clientId,
    brokers: c.brokers,
    ...(ssl ? { ssl } : {}),
    ...(c.sasl ? { sasl: c.sasl as SASLOptions } : {}),
    connectionTimeout: 5_000,
    retry: { initialRetryTime: 300, retries: 8 },
  }
}

/** librdkafka global settings (producer). */
export function rdkafkaConfig(c: KafkaConnection): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {
    'metadata.broker.list': c.brokers.join(','),
    'client.id': c.clientId,
  }
  if (c.ssl || c.sasl) {
    out['security.protocol'] = c.ssl ? (c.sasl ? 'sasl_ssl' : 'ssl') : 'sasl_plaintext'
  }
  if (c.ssl && c.sslCaFile) out['ssl.ca.location'] = c.sslCaFile
  if (c.sasl) {
    out['sasl.mechanisms'] = c.sasl.mechanism.toUpperCase()
    out['sasl.username'] = c.sasl.username
    out['sasl.password'] = c.sasl.password
  }
  return out
}
