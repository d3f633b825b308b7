import { type Knex } from 'knex'

// Migrations are frozen once released: they repeat their own value lists
// instead of importing the application's, which may change later.
//
// Timestamps: timestamptz in PostgreSQL, ISO-8601 UTC text in SQLite.
// JSON: json in PostgreSQL, text in SQLite (a column declared `json` in
// SQLite would get NUMERIC affinity and turn the text '123' into a number).

export async function up(knex: Knex): Promise<void> {
  const pg = (knex.client as Knex.Client).config.client === 'pg'
  const timestamp = (t: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder =>
    pg ? t.timestamp(name, { useTz: true }) : t.text(name)
  const json = (t: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder => (pg ? t.json(name) : t.text(name))

  await knex.schema.createTable('sources', (t) => {
    t.string('id', 64).primary()
    t.string('kind', 64).notNullable()
    t.text('name').notNullable()
    t.text('operator')
    t.text('district')
    t.string('timezone', 64).notNullable()
    json(t, 'schedule').notNullable()
    json(t, 'freshness').notNullable()
    // Values marked x-secret in the connector's schema are sealed (SM4) before they get here.
    json(t, 'config').notNullable()
    // A source that is added does not run until it is deployed.
    t.enu('desired_state', ['deployed', 'paused']).notNullable().defaultTo('paused')
    timestamp(t, 'created_at').notNullable()
    timestamp(t, 'updated_at').notNullable()
    // Optimistic concurrency; running processes also restart a source's connector when it changes.
    t.integer('version').notNullable().defaultTo(1)
    t.index(['kind'])
  })

  await knex.schema.createTable('connector_state', (t) => {
    t.string('source_id', 64).primary().references('id').inTable('sources').onDelete('CASCADE')
    // Opaque to everyone but the connector; null means "read from the beginning".
    json(t, 'cursor')
    timestamp(t, 'checkpoint_at')
    t.enu('run_state', ['idle', 'running', 'backoff', 'failed', 'stopped']).notNullable().defaultTo('idle')
    t.text('last_error')
    timestamp(t, 'last_error_at')
    timestamp(t, 'last_run_at')
    t.integer('consecutive_failures').notNullable().defaultTo(0)
  })

  await knex.schema.createTable('source_events', (t) => {
    t.increments('id').primary()
    t.string('source_id', 64).notNullable().references('id').inTable('sources').onDelete('CASCADE')
    timestamp(t, 'at').notNullable()
    // Free text rather than a CHECK list, so that new kinds need no migration.
    t.string('kind', 32).notNullable()
    t.text('actor').notNullable()
    json(t, 'detail')
    t.index(['source_id', 'id'])
  })
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('source_events')
  await knex.schema.dropTableIfExists('connector_state')
  await knex.schema.dropTableIfExists('sources')
}
