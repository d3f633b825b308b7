import { type Knex } from 'knex'

// Sync health: alerts, silences, the incident ledger with its handling
// timeline, notification groups and the delivery log. Frozen once released,
// like every migration: value lists are repeated here on purpose.
//
// Alerts and incidents keep their source id as plain text, not a foreign key:
// the ledger outlives a removed source.
// Timestamps: timestamptz in PostgreSQL, ISO-8601 UTC text in SQLite.
// JSON: json in PostgreSQL, text in SQLite.

export async function up(knex: Knex): Promise<void> {
  const pg = (knex.client as Knex.Client).config.client === 'pg'
  const timestamp = (t: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder =>
    pg ? t.timestamp(name, { useTz: true }) : t.text(name)
  const json = (t: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder => (pg ? t.json(name) : t.text(name))
  const states = ['OK', 'LATE', 'STALLED', 'STOPPED', 'SKEWED', 'QUIET', 'MAINTENANCE']

  await knex.schema.createTable('incidents', (t) => {
    t.increments('id').primary()
    t.string('source_id', 64).notNullable()
    t.text('source_name')
    t.text('operator')
    t.text('district')
    t.enu('status', ['open', 'recovered', 'closed']).notNullable()
    t.text('title').notNullable()
    // When the fault began (the moment its condition started, not when it was noticed).
    timestamp(t, 'occurred_at').notNullable()
    timestamp(t, 'recovered_at')
    timestamp(t, 'closed_at')
    // Entities affected, states seen, expected records missing.
    json(t, 'scope').notNullable()
    t.text('root_cause')
    t.text('assignee')
    timestamp(t, 'updated_at').notNullable()
    t.integer('version').notNullable().defaultTo(1)
    t.index(['status'])
    t.index(['source_id', 'status'])
    t.index(['occurred_at'])
  })

  await knex.schema.createTable('incident_events', (t) => {
    t.increments('id').primary()
    t.integer('incident_id').unsigned().notNullable().references('id').inTable('incidents').onDelete('CASCADE')
    timestamp(t, 'at').notNullable()
    t.text('actor').notNullable()
    // opened, reopened, alert, recovered, acknowledged, escalated, note, root_cause, assigned, closed
    t.string('kind', 32).notNullable()
    t.text('message').notNullable()
    json(t, 'detail')
    t.index(['incident_id', 'id'])
  })

  await knex.schema.createTable('alerts', (t) => {
    t.increments('id').primary()
    t.string('fingerprint', 32).notNullable()
    t.string('source_id', 64).notNullable()
    t.text('entity_id')
    t.string('entity_kind', 16)
    t.enu('state', states).notNullable()
    t.enu('status', ['firing', 'resolved']).notNullable()
    t.text('operator')
    t.text('district')
    json(t, 'labels').notNullable()
    json(t, 'annotations').notNullable()
    timestamp(t, 'starts_at').notNullable()
    timestamp(t, 'ends_at')
    timestamp(t, 'updated_at').notNullable()
    timestamp(t, 'acked_at')
    t.text('acked_by')
    t.text('ack_comment')
    t.integer('escalation_level').notNullable().defaultTo(0)
    t.integer('incident_id').unsigned().references('id').inTable('incidents').onDelete('SET NULL')
    t.index(['status'])
    t.index(['source_id', 'status'])
    t.index(['fingerprint', 'status'])
    t.index(['incident_id'])
  })

  await knex.schema.createTable('silences', (t) => {
    t.increments('id').primary()
    // Label equality matchers: sourceId, entityId, state, operator, district, alertname.
    json(t, 'matchers').notNullable()
    timestamp(t, 'starts_at').notNullable()
    timestamp(t, 'ends_at').notNullable()
    t.text('reason').notNullable()
    t.text('created_by').notNullable()
    timestamp(t, 'created_at').notNullable()
    t.index(['ends_at'])
  })

  await knex.schema.createTable('notification_groups', (t) => {
    t.string('receiver', 128).notNullable()
    t.string('group_key', 512).notNullable()
    // Alert ids in the last notification sent for the group, and when it went.
    json(t, 'alert_ids').notNullable()
    timestamp(t, 'last_sent_at')
    t.primary(['receiver', 'group_key'])
  })

  await knex.schema.createTable('alert_deliveries', (t) => {
    t.increments('id').primary()
    timestamp(t, 'at').notNullable()
    t.string('receiver', 128).notNullable()
    t.string('channel', 128).notNullable()
    t.string('group_key', 512).notNullable()
    t.enu('kind', ['notify', 'repeat', 'escalation']).notNullable()
    t.enu('status', ['firing', 'resolved']).notNullable()
    t.enu('outcome', ['delivered', 'failed']).notNullable()
    t.integer('attempts').notNullable()
    t.integer('alerts').notNullable()
    t.text('error')
    t.index(['at'])
  })
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('alert_deliveries')
  await knex.schema.dropTableIfExists('notification_groups')
  await knex.schema.dropTableIfExists('silences')
  await knex.schema.dropTableIfExists('alerts')
  await knex.schema.dropTableIfExists('incident_events')
  await knex.schema.dropTableIfExists('incidents')
}
