import { type Admin } from 'kafkajs'
import { EVENT_ROUTES } from '../../schemas/events.ts'

export interface TopicSpec {
  name: string
  partitions: number
  retentionMs: number
}

const DAY = 24 * 3600 * 1000

/** Busy families get more partitions: the key is the source id, so partitions bound the pipelines that can share a family. */
const PARTITIONS: Record<string, number> = {
  'citysync.parking.passage': 6,
  'citysync.parking.occupancy': 3,
  'citysync.bike.vehicle': 6,
  'citysync.bike.station': 3,
}

/** Where rejected records of a family go, with the reason in their headers. */
export function deadLetterTopic(topic: string): string {
  return `${topic}.dlq`
}

/**
 * Every topic citysync uses: one per event family (the routes in
 * schemas/events.ts) and a dead-letter topic beside each. Events are kept 7
 * days (long enough to rebuild a week of ClickHouse data by replay),
 * dead letters 30 days.
 */
export function topicSpecs(env: NodeJS.ProcessEnv = process.env): TopicSpec[] {
  const retentionDays = Number(env.KAFKA_RETENTION_DAYS ?? 7)
  const families = [...new Set(Object.values(EVENT_ROUTES).map((r) => r.topic))].sort()
  const specs: TopicSpec[] = []
  for (const name of families) {
    specs.push({ name, partitions: PARTITIONS[name] ?? 3, retentionMs: retentionDays * DAY })
    if (name !== EVENT_ROUTES.IngestError.topic) specs.push({ name: deadLetterTopic(name), partitions: 1, retentionMs: 30 * DAY })
  }
  return specs
}

export interface TopicChange {
  name: string
  action: 'created' | 'partitions increased' | 'up to date'
  partitions: number
}

/**
 * Creates missing topics and adds partitions where a topic has fewer than its
 * spec (Kafka cannot remove partitions; more than the spec is left alone).
 * Retention is set on creation; an operator's later change is respected.
 */
export async function ensureTopics(admin: Admin, logical: readonly TopicSpec[], replicationFactor = 1, prefix = ''): Promise<TopicChange[]> {
  const specs = logical.map((s) => ({ ...s, name: prefix + s.name }))
  const existing = new Set(await admin.listTopics())
  const missing = specs.filter((s) => !existing.has(s.name))
  if (missing.length > 0) {
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((s) => ({
        topic: s.name,
        numPartitions: s.partitions,
        replicationFactor,
        configEntries: [
          { name: 'retention.ms', value: String(s.retentionMs) },
          { name: 'min.insync.replicas', value: String(Math.max(1, Math.min(2, replicationFactor - 1))) },
        ],
      })),
    })
  }
  const present = specs.filter((s) => existing.has(s.name))
  const changes: TopicChange[] = missing.map((s) => ({ name: s.name, action: 'created', partitions: s.partitions }))
  if (present.length > 0) {
    const meta = await admin.fetchTopicMetadata({ topics: present.map((s) => s.name) })
    const count = new Map(meta.topics.map((t) => [t.name, t.partitions.length]))
    const grow = present.filter((s) => (count.get(s.name) ?? 0) < s.partitions)
    if (grow.length > 0) await admin.createPartitions({ topicPartitions: grow.map((s) => ({ topic: s.name, count: s.partitions })) })
    for (const s of present) {
      const had = count.get(s.name) ?? 0
      changes.push(had < s.partitions ? { name: s.name, action: 'partitions increased', partitions: s.partitions } : { name: s.name, action: 'up to date', partitions: had })
    }
  }
  return changes.sort((a, b) => a.name.localeCompare(b.name))
}
