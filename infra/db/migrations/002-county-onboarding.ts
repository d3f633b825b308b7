import { type Knex } from 'knex'

// Onboarding of county car parks (接入状态): where each car park stands on its
// way into the platform, and every change of that, for the quarterly
// onboarding list. Frozen once released, like every migration: the value
// lists are repeated here on purpose.
//
// Calendar dates (planned, connected, onboarded, suspended) are 'YYYY-MM-DD'
// text in both stores: a date has no time zone, and pg would turn a date
// column into a JS Date at the server's local midnight.
// Timestamps: timestamptz in PostgreSQL, ISO-8601 UTC text in SQLite.

export async function up(knex: Knex): Promise<void> {
  const pg = (knex.client as Knex.Client).config.client === 'pg'
  const timestamp = (t: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder =>
    pg ? t.timestamp(name, { useTz: true }) : t.text(name)
  const json = (t: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder => (pg ? t.json(name) : t.text(name))
  const statuses = ['planned', 'connecting', 'onboarded', 'suspended']

  await knex.schema.createTable('county_lot_onboarding', (t) => {
    t.string('lot_id', 64).primary()
    t.text('county').notNullable()
    t.text('name')
    // The source that delivers the car park's data; kept when the source is removed.
    t.string('source_id', 64).references('id').inTable('sources').onDelete('SET NULL')
    t.enu('status', statuses).notNullable()
    t.string('planned_date', 10)
    t.string('connected_date', 10)
    t.string('onboarded_date', 10)
    t.string('suspended_date', 10)
    t.text('note')
    timestamp(t, 'created_at').notNullable()
    timestamp(t, 'updated_at').notNullable()
    t.text('updated_by').notNullable()
    t.integer('version').notNullable().defaultTo(1)
    t.index(['county', 'status'])
  })

  await knex.schema.createTable('county_lot_onboarding_history', (t) => {
    t.increments('id').primary()
    t.string('lot_id', 64).notNullable().references('lot_id').inTable('county_lot_onboarding').onDelete('CASCADE')
    timestamp(t, 'at').notNullable()
    t.text('actor').notNullable()
    // Null when the record was created.
    t.enu('from_status', statuses)
    t.enu('to_status', statuses).notNullable()
    // The fields that changed, with their old and new values.
    json(t, 'changes')
    t.index(['lot_id', 'id'])
  })
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('county_lot_onboarding_history')
  await knex.schema.dropTableIfExists('county_lot_onboarding')
}
