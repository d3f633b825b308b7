import { type Knex } from 'knex'

// Users and access: users, login sessions, API tokens, and the audit log.
// Frozen once released, like every migration: value lists are repeated here.
//
// Credentials are stored only as hashes (scrypt for passwords, SHA-256 for
// session and API tokens); TOTP secrets are sealed (SM4, as source secrets).
//
// audit_log is append-only: a trigger refuses UPDATE and DELETE (and, on
// PostgreSQL, TRUNCATE). Each row carries prev_hash and hash, a SHA-256 chain
// over the rows in seq order (lib/auth/audit.ts), so a row changed or removed
// behind the triggers' back shows up when the chain is verified. `seq` is
// unique: two writers cannot both extend the chain from the same row.
// Timestamps: timestamptz in PostgreSQL, ISO-8601 UTC text in SQLite.

export async function up(knex: Knex): Promise<void> {
  const pg = (knex.client as Knex.Client).config.client === 'pg'
  const timestamp = (t: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder =>
    pg ? t.timestamp(name, { useTz: true }) : t.text(name)
  const roles = ['viewer', 'analyst', 'operator', 'admin']

  await knex.schema.createTable('users', (t) => {
    t.increments('id').primary()
    t.string('username', 64).notNullable().unique()
    t.text('password_hash').notNullable()
    t.enu('role', roles).notNullable()
    t.boolean('disabled').notNullable().defaultTo(false)
    // Sealed base32 secret; pending until the first code confirms the enrolment.
    t.text('totp_secret')
    t.text('totp_pending')
    t.boolean('totp_enabled').notNullable().defaultTo(false)
    // The last step a code was accepted for: a code is good once.
    t.bigInteger('totp_last_step')
    t.integer('failed_logins').notNullable().defaultTo(0)
    timestamp(t, 'failed_window_start')
    timestamp(t, 'locked_until')
    t.text('lock_reason')
    timestamp(t, 'last_login_at')
    t.text('last_login_ip')
    timestamp(t, 'password_changed_at').notNullable()
    timestamp(t, 'created_at').notNullable()
    t.text('created_by').notNullable()
    timestamp(t, 'updated_at').notNullable()
  })

  await knex.schema.createTable('sessions', (t) => {
    t.string('id', 32).primary()
    t.string('token_hash', 64).notNullable()
    t.integer('user_id').unsigned().notNullable().references('id').inTable('users').onDelete('CASCADE')
    timestamp(t, 'created_at').notNullable()
    timestamp(t, 'last_seen_at').notNullable()
    // The absolute end; the idle limit is checked against last_seen_at.
    timestamp(t, 'expires_at').notNullable()
    timestamp(t, 'revoked_at')
    t.text('ip')
    t.text('user_agent')
    t.index(['user_id'])
  })

  await knex.schema.createTable('api_tokens', (t) => {
    t.string('id', 32).primary()
    t.string('name', 64).notNullable()
    t.string('token_hash', 64).notNullable()
    t.enu('role', roles).notNullable()
    // JSON array of permissions narrowing the role, or null for all of the role's.
    t.text('scopes')
    timestamp(t, 'expires_at').notNullable()
    timestamp(t, 'created_at').notNullable()
    t.text('created_by').notNullable()
    timestamp(t, 'last_used_at')
    timestamp(t, 'revoked_at')
    t.text('revoked_by')
    t.index(['name'])
  })

  await knex.schema.createTable('audit_log', (t) => {
    t.bigInteger('seq').primary()
    timestamp(t, 'at').notNullable()
    t.text('actor')
    // user, token, bootstrap, cli, system; null when the request carried no valid credential
    t.string('actor_kind', 16)
    t.string('role', 16)
    // 'POST /api/v1/sources/:id/pause', 'cli users add', …
    t.text('action').notNullable()
    t.string('method', 8)
    t.text('route')
    t.text('target')
    t.integer('status')
    t.text('ip')
    t.text('user_agent')
    // JSON text (kept as text so the chain hashes exactly what is stored): before/after, outcome.
    t.text('detail')
    t.string('prev_hash', 64).notNullable()
    t.string('hash', 64).notNullable()
    t.index(['at'])
    t.index(['actor'])
    t.index(['target'])
  })

  if (pg) {
    await knex.raw(`
      CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
      END
      $$`)
    await knex.raw('CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()')
    await knex.raw('CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()')
  } else {
    await knex.raw(`CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END`)
    await knex.raw(`CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END`)
  }
}

export async function down(knex: Knex): Promise<void> {
  const pg = (knex.client as Knex.Client).config.client === 'pg'
  // The triggers go with their table.
  await knex.schema.dropTableIfExists('audit_log')
  if (pg) await knex.raw('DROP FUNCTION IF EXISTS audit_log_append_only()')
  await knex.schema.dropTableIfExists('api_tokens')
  await knex.schema.dropTableIfExists('sessions')
  await knex.schema.dropTableIfExists('users')
}
