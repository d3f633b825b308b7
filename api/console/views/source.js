// One source: its definition, run status, cursor, freshness with its
// entities, its recent errors (the connector's last error, the alerts and
// incidents it raised, and the newest rejected records) and, for roles that may change sources, deploy /
// pause / resume / restart.

import { ApiError, get, post, query, serverNow } from '../api.js'
import { fill, formatAge, formatNumber, formatSpan, formatTime, h, notice, stateBadge } from '../dom.js'
import { label, t } from '../i18n.js'

function errorText(err) {
  if (err instanceof ApiError && err.status === 403) return t('app.forbidden')
  return t('app.error', { message: err.message })
}

/** How long ago `iso` was, by the server's clock. */
function serverAge(iso) {
  return serverNow() - Date.parse(iso)
}

function facts(rows, testid) {
  return h('dl', { class: 'facts', testid }, rows.filter(Boolean).map(([k, v, id]) => [h('dt', {}, t(k)), h('dd', { testid: id }, v)]))
}

function schedule(s) {
  if (s === null || s === undefined) return ''
  if (typeof s.every === 'string') return `every ${s.every}`
  if (typeof s.cron === 'string') return `cron ${s.cron}`
  return JSON.stringify(s)
}

export function sourceView({ route, can }) {
  const id = route.parts[1]
  const path = `/sources/${encodeURIComponent(id)}`
  const message = h('div', { class: 'messages' })
  const content = h('div', { class: 'source-body' }, h('p', { class: 'muted' }, t('app.loading')))
  const el = h('section', { class: 'source', testid: 'source' }, h('p', {}, h('a', { href: '#/board' }, `← ${t('nav.board')}`)), message, content)

  async function act(action, source, force = false) {
    const name = t(`source.${action}`)
    if (!window.confirm(t('source.confirm', { action: name, name: source.name }))) return
    try {
      await post(`${path}/${action}${force ? '?force=true' : ''}`)
      fill(message, notice('ok', t('source.done', { action: name }), 'source-action-done'))
    } catch (err) {
      const forceable = action === 'deploy' && err instanceof ApiError && err.code === 'CITYSYNC_ERR_SOURCE_CHECK_FAILED'
      fill(message, 
        notice('error', errorText(err), 'source-action-error'),
        forceable ? h('button', { type: 'button', testid: 'source-force-deploy', onclick: () => void act('deploy', source, true) }, t('source.forceDeploy')) : null,
      )
    }
    await load()
  }

  function actions(source) {
    if (!can('sources:write')) return null
    const deployed = source.desiredState === 'deployed'
    const provisioned = source.status.state === 'provisioned'
    const button = (action) => h('button', { type: 'button', testid: `source-${action}`, onclick: () => void act(action, source) }, t(`source.${action}`))
    return h(
      'div',
      { class: 'actions', testid: 'source-actions' },
      provisioned ? button('deploy') : null,
      deployed ? button('pause') : null,
      !deployed && !provisioned ? button('resume') : null,
      deployed ? button('restart') : null,
    )
  }

  function draw(source, status, cursor, freshness, alerts, incidents, rejected) {
    const f = freshness?.source
    const errors = []
    if (status.lastError) errors.push(h('li', { class: 'error-line' }, h('strong', {}, t('source.lastError')), ' ', status.lastError))
    for (const a of alerts.items) {
      if (a.state === 'STOPPED' || a.state === 'SKEWED' || a.status === 'firing') {
        errors.push(h('li', {}, stateBadge(a.state), ' ', formatTime(a.startsAt), ' ', a.annotations.summary ?? '', a.entityId ? ` (${a.entityId})` : ''))
      }
    }
    fill(content, 
      h('header', { class: 'source-head' }, h('h1', { testid: 'source-name' }, source.name), f ? stateBadge(f.state, 'source-state') : null, h('span', { class: 'spacer' }), actions(source)),
      h(
        'div',
        { class: 'cards' },
        h(
          'div',
          { class: 'card' },
          h('h2', {}, t('source.definition')),
          facts([
            ['source.id', source.id],
            ['source.kind', label('kind', source.kind)],
            ['source.district', source.district ?? ''],
            ['source.operator', source.operator ?? ''],
            ['source.timezone', source.timezone],
            ['source.schedule', schedule(source.schedule)],
            ['source.maxDelay', source.freshness?.maxDelay ?? '2h'],
            ['source.desiredState', label('source.desired', source.desiredState), 'source-desired'],
            ['source.version', String(source.version)],
          ]),
        ),
        h(
          'div',
          { class: 'card' },
          h('h2', {}, t('source.status')),
          facts(
            [
              ['source.runState', label('source.run', status.state), 'source-run-state'],
              ['source.rowsLanded', formatNumber(status.rowsLanded)],
              ['source.rowsRejected', formatNumber(status.rowsRejected)],
              ['source.lastEventAt', status.lastEventAt ? `${formatTime(status.lastEventAt)} (${formatAge(serverAge(status.lastEventAt))})` : t('age.never')],
              ['source.lastArrivalAt', formatTime(status.lastArrivalAt)],
              ['source.lastCheckpointAt', formatTime(status.lastCheckpointAt)],
            ],
            'source-status',
          ),
        ),
        h(
          'div',
          { class: 'card' },
          h('h2', {}, t('source.freshness')),
          f
            ? facts([
                ['board.state', stateBadge(f.state)],
                ['source.reason', f.reason],
                ['source.delay', t('source.delayOf', { delay: formatSpan(f.delaySeconds * 1000), max: formatSpan(f.maxDelaySeconds * 1000) })],
                ['board.newest', formatAge(f.lastEventAt === null ? null : serverAge(f.lastEventAt))],
              ])
            : h('p', { class: 'muted' }, t('app.none')),
        ),
        h(
          'div',
          { class: 'card' },
          h('h2', {}, t('source.cursor')),
          h('pre', { class: 'cursor', testid: 'source-cursor' }, JSON.stringify(cursor.cursor, null, 2)),
          h('p', { class: 'muted' }, `${t('source.checkpointAt')}: ${formatTime(cursor.checkpointAt)}`),
        ),
      ),
      h('h2', {}, t('source.errors')),
      errors.length === 0 ? h('p', { class: 'muted', testid: 'source-errors' }, t('source.noErrors')) : h('ul', { class: 'plain errors', testid: 'source-errors' }, errors),
      rejected && rejected.items.length > 0
        ? [
            h('h2', {}, `${t('source.rejected')} (${formatNumber(rejected.total)})`),
            h(
              'div',
              { class: 'table-wrap' },
              h(
                'table',
                { class: 'table', testid: 'source-rejected' },
                h('thead', {}, h('tr', {}, ['source.rejectedAt', 'source.rejectedCode', 'source.reason'].map((k) => h('th', {}, t(k))))),
                h(
                  'tbody',
                  {},
                  rejected.items.map((r) => h('tr', {}, h('td', {}, formatTime(r.receivedAt)), h('td', {}, r.code), h('td', { class: 'wrap', title: r.raw }, r.reason))),
                ),
              ),
            ),
          ]
        : null,
      freshness && freshness.entities.items.length > 0
        ? [
            h('h2', {}, `${t('source.entities')} (${freshness.entities.total})`),
            h(
              'div',
              { class: 'table-wrap' },
              h(
                'table',
                { class: 'table', testid: 'source-entities' },
                h('thead', {}, h('tr', {}, ['source.id', 'source.kind', 'board.state', 'board.newest', 'source.reason'].map((k) => h('th', {}, t(k))))),
                h(
                  'tbody',
                  {},
                  freshness.entities.items.map((e) =>
                    h(
                      'tr',
                      {},
                      h('td', {}, e.id),
                      h('td', {}, label('entity', e.kind)),
                      h('td', {}, stateBadge(e.state)),
                      h('td', {}, formatAge(e.lastEventAt === null ? null : serverAge(e.lastEventAt))),
                      h('td', { class: 'wrap' }, e.reason),
                    ),
                  ),
                ),
              ),
            ),
          ]
        : null,
      h('h2', {}, h('a', { href: `#/alerts?status=&sourceId=${encodeURIComponent(id)}` }, t('source.recentAlerts'))),
      alerts.items.length === 0
        ? h('p', { class: 'muted' }, t('app.none'))
        : h(
            'ul',
            { class: 'plain' },
            alerts.items.map((a) => h('li', {}, stateBadge(a.state), ' ', label('alerts.status', a.status), ' · ', formatTime(a.startsAt), ' · ', a.entityId ?? t('alerts.wholeSource'), ' · ', a.annotations.summary ?? '')),
          ),
      h('h2', {}, t('source.recentIncidents')),
      incidents.items.length === 0
        ? h('p', { class: 'muted' }, t('app.none'))
        : h(
            'ul',
            { class: 'plain' },
            incidents.items.map((i) => h('li', {}, h('a', { href: `#/incidents/${i.id}` }, `#${i.id} ${i.title}`), ' · ', label('incidents.status', i.status), ' · ', formatTime(i.occurredAt), i.rootCause ? ` · ${i.rootCause}` : '')),
          ),
    )
  }

  async function load() {
    try {
      const [source, status, cursor, freshness, alerts, incidents, rejected] = await Promise.all([
        get(path),
        get(`${path}/status`),
        get(`${path}/cursor`),
        get(`/freshness/${encodeURIComponent(id)}?limit=500`).catch(() => null),
        get(`/alerts${query({ sourceId: id, limit: 20 })}`),
        get(`/incidents${query({ sourceId: id, limit: 10 })}`),
        get(`${path}/errors?limit=20`).catch(() => null),
      ])
      draw(source, status, cursor, freshness, alerts, incidents, rejected)
    } catch (err) {
      fill(content, notice('error', errorText(err), 'source-error'))
    }
  }

  void load()
  return { el }
}
