import { type Knex } from 'knex'

// Bike-share balance alerts (quality/bike-balance.ts): an area with too many
// or too few shared bikes raises an alert in the same table as the
// sync-health alerts, with state ACCUMULATION or SHORTAGE and entity kind
// `area`, so it is listed, silenced, acknowledged and sent like them. The
// state check of `alerts` gains the two states. Frozen once released, like
// every migration: value lists are repeated here.

const BEFORE = ['OK', 'LATE', 'STALLED', 'STOPPED', 'SKEWED', 'QUIET', 'MAINTENANCE']
const AFTER = [...BEFORE, 'ACCUMULATION', 'SHORTAGE']

export async function up(knex: Knex): Promise<void> {
  await setStates(knex, AFTER)
}

export async function down(knex: Knex): Promise<void> {
  await knex('alerts').whereIn('state', ['ACCUMULATION', 'SHORTAGE']).delete()
  await setStates(knex, BEFORE)
}

async function setStates(knex: Knex, states: readonly string[]): Promise<void> {
  const list = states.map((s) => `'${s}'`).join(', ')
  if ((knex.client as Knex.Client).config.client === 'pg') {
    // The check knex made for the enum column, named by PostgreSQL's default rule.
    await knex.raw('alter table alerts drop constraint if exists alerts_state_check')
    await knex.raw(`alter table alerts add constraint alerts_state_check check (state in (${list}))`)
    return
  }
  // SQLite cannot alter a check: the table is made again with the same columns, rows and indexes.
  const objects = await knex.raw<{ type: string; name: string; sql: string }[]>(`select type, name, sql from sqlite_master where tbl_name = 'alerts' and sql is not null`)
  const table = objects.find((o) => o.type === 'table')?.sql
  const changed = table?.replace(/check \(`state` in \([^)]*\)\)/, `check (\`state\` in (${list}))`)
  if (table === undefined || changed === undefined || changed === table) throw new Error('alerts: the state check was not found')
  await knex.raw(changed.replace('CREATE TABLE `alerts`', 'CREATE TABLE `alerts_rebuilt`'))
  await knex.raw('insert into `alerts_rebuilt` select * from `alerts`')
  await knex.raw('drop table `alerts`')
  await knex.raw('alter table `alerts_rebuilt` rename to `alerts`')
  for (const o of objects) if (o.type === 'index') await knex.raw(o.sql)
}
