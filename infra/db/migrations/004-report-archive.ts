import { type Knex } from 'knex'

// Report archive: every generated monthly sync report and quarterly
// onboarding list, kept as its model (JSON text, rendered to HTML, XLSX,
// CSV or PDF on demand), with what triggered it. The newest row of a
// (kind, period) is the current report; older rows stay as its history.
// `data_through` is when the warehouse was read: backfilled rows for the
// period that land after it are a reason to generate the report again.
// Frozen once released, like every migration: value lists are repeated here.
// Timestamps: timestamptz in PostgreSQL, ISO-8601 UTC text in SQLite.

export async function up(knex: Knex): Promise<void> {
  const pg = (knex.client as Knex.Client).config.client === 'pg'
  const timestamp = (t: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder =>
    pg ? t.timestamp(name, { useTz: true }) : t.text(name)

  await knex.schema.createTable('report_archive', (t) => {
    t.increments('id').primary()
    t.enu('kind', ['sync', 'onboarding']).notNullable()
    // 'YYYY-MM' (sync) or 'YYYYQn' (onboarding)
    t.string('period', 16).notNullable()
    t.string('zone', 64).notNullable()
    t.enu('trigger', ['schedule', 'manual', 'backfill']).notNullable()
    t.text('reason')
    timestamp(t, 'generated_at').notNullable()
    timestamp(t, 'data_through').notNullable()
    t.integer('revision').notNullable()
    // Headline figures, for listings without reading the model.
    t.text('summary').notNullable()
    // The whole report model (can be several MB for thousands of car parks).
    t.text('model').notNullable()
    t.unique(['kind', 'period', 'zone', 'revision'])
    t.index(['kind', 'period'])
  })
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('report_archive')
}
