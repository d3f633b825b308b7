// The incident ledger (故障台账) and one incident: scope, handling timeline,
// linked alerts; notes, assignee and root cause are written back with the
// version read, so an edit made meanwhile by someone else is refused and
// the page reloads instead of overwriting it.

import { ApiError, get, patch, query } from '../api.js'
import { field, fill, formatNumber, formatSpan, formatTime, h, notice, select, stateBadge } from '../dom.js'
import { label, t } from '../i18n.js'

const PAGE = 50

function errorText(err) {
  if (err instanceof ApiError && err.status === 403) return t('app.forbidden')
  if (err instanceof ApiError && err.code === 'CITYSYNC_ERR_INCIDENT_ROOT_CAUSE') return t('incidents.closeNeedsCause')
  return t('app.error', { message: err.message })
}

function statusBadge(status, testid) {
  return h('span', { class: ['badge', `incident-${status}`], 'data-status': status, testid }, label('incidents.status', status))
}

function scopeText(scope) {
  if (scope.entityCount === 0) return t('incidents.scopeWhole')
  const more = scope.entityCount > scope.entities.length ? ' …' : ''
  return t('incidents.scopeEntities', { n: scope.entityCount, list: scope.entities.slice(0, 20).join('、') + more })
}

export function incidentsView({ route }) {
  const state = { status: route.query.get('status') ?? '', sourceId: route.query.get('sourceId') ?? '', offset: 0 }
  const message = h('div', { class: 'messages' })
  const body = h('div', { class: 'table-wrap' })
  const pager = h('div', { class: 'pager' })
  const exportLink = (format) =>
    h('a', { class: 'button', href: `/api/v1/incidents${query({ format, status: state.status, sourceId: state.sourceId })}`, download: '', testid: `incidents-export-${format}` }, `${t('incidents.export')} ${format.toUpperCase()}`)
  const exports = h('span', { class: 'exports' })
  const el = h(
    'section',
    { class: 'incidents', testid: 'incidents' },
    h(
      'div',
      { class: 'toolbar' },
      h('h1', {}, t('incidents.title')),
      field(
        t('incidents.status'),
        select(
          {
            testid: 'incidents-status',
            onchange: (ev) => {
              state.status = ev.target.value
              state.offset = 0
              void load()
            },
          },
          [['', t('app.all')], ...['open', 'recovered', 'closed'].map((s) => [s, label('incidents.status', s)])],
          state.status,
        ),
      ),
      h('span', { class: 'spacer' }),
      exports,
    ),
    message,
    body,
    pager,
  )

  async function load() {
    fill(exports, exportLink('csv'), exportLink('xlsx'))
    try {
      const page = await get(`/incidents${query({ status: state.status, sourceId: state.sourceId, limit: PAGE, offset: state.offset })}`)
      fill(message)
      fill(body, 
        page.items.length === 0
          ? h('p', { class: 'muted', testid: 'incidents-empty' }, t('incidents.empty'))
          : h(
              'table',
              { class: 'table', testid: 'incidents-table' },
              h(
                'thead',
                {},
                h(
                  'tr',
                  {},
                  ['incidents.id', 'incidents.headline', 'incidents.status', 'incidents.occurredAt', 'incidents.recoveredAt', 'incidents.duration', 'incidents.scope', 'incidents.rootCause', 'incidents.assignee'].map((k) => h('th', {}, t(k))),
                ),
              ),
              h(
                'tbody',
                {},
                page.items.map((i) =>
                  h(
                    'tr',
                    { testid: `incident-row-${i.id}` },
                    h('td', {}, h('a', { href: `#/incidents/${i.id}`, testid: `incident-link-${i.id}` }, `#${i.id}`)),
                    h('td', { class: 'wrap' }, h('a', { href: `#/incidents/${i.id}` }, i.title), h('div', { class: 'muted' }, [i.district, i.operator].filter(Boolean).join(' · '))),
                    h('td', {}, statusBadge(i.status)),
                    h('td', {}, formatTime(i.occurredAt)),
                    h('td', {}, formatTime(i.recoveredAt)),
                    h('td', {}, i.durationSeconds === null ? '' : formatSpan(i.durationSeconds * 1000)),
                    h('td', { class: 'wrap' }, scopeText(i.scope)),
                    h('td', { class: 'wrap' }, i.rootCause ?? ''),
                    h('td', {}, i.assignee ?? ''),
                  ),
                ),
              ),
            ),
      )
      fill(pager, 
        h('button', { type: 'button', disabled: state.offset === 0, onclick: () => ((state.offset = Math.max(0, state.offset - PAGE)), void load()) }, t('app.prev')),
        h('span', { class: 'muted' }, t('app.page', { from: page.total === 0 ? 0 : state.offset + 1, to: state.offset + page.items.length, total: page.total })),
        h('button', { type: 'button', disabled: state.offset + PAGE >= page.total, onclick: () => ((state.offset += PAGE), void load()) }, t('app.next')),
      )
    } catch (err) {
      fill(message, notice('error', errorText(err), 'incidents-error'))
    }
  }

  fill(body, h('p', { class: 'muted' }, t('app.loading')))
  void load()
  return { el }
}

export function incidentView({ route, me, can }) {
  const id = Number(route.parts[1])
  const message = h('div', { class: 'messages' })
  const content = h('div', { class: 'incident-body' }, h('p', { class: 'muted' }, t('app.loading')))
  const el = h('section', { class: 'incident', testid: 'incident' }, h('p', {}, h('a', { href: '#/incidents' }, `← ${t('incidents.title')}`)), message, content)
  let current = null

  // The version read goes with every change but a note (notes only add to the
  // timeline). The quality service bumps the version too as it widens the
  // scope; when only it changed the incident, the change is sent again on the
  // new version. When a person changed the same fields or closed it, the
  // page reloads and says so instead of overwriting their edit.
  async function save(change) {
    const seen = current.incident
    const touched = Object.keys(change).filter((k) => k === 'rootCause' || k === 'assignee' || k === 'status')
    let version = seen.version
    for (let attempt = 0; ; attempt++) {
      try {
        const detail = await patch(`/incidents/${id}`, { by: me.username, ...(touched.length > 0 ? { version } : {}), ...change })
        fill(message, notice('ok', t('incidents.saved'), 'incident-saved'))
        draw(detail)
        return
      } catch (err) {
        if (!(err instanceof ApiError && err.code === 'CITYSYNC_ERR_INCIDENT_CONFLICT')) {
          fill(message, notice('error', errorText(err), 'incident-error'))
          return
        }
        const fresh = await get(`/incidents/${id}`)
        const untouched = fresh.incident.status !== 'closed' && touched.every((k) => k === 'status' || fresh.incident[k] === seen[k])
        if (!untouched || attempt >= 2) {
          draw(fresh)
          fill(message, notice('error', t('incidents.conflict'), 'incident-conflict'))
          return
        }
        version = fresh.incident.version
      }
    }
  }

  function forms(i) {
    if (!can('incidents:write') || i.status === 'closed') return null
    const note = h('textarea', { rows: 3, maxlength: 4000, testid: 'incident-note' })
    const rootCause = h('textarea', { rows: 3, maxlength: 4000, testid: 'incident-root-cause', value: i.rootCause ?? '' })
    const assignee = h('input', { maxlength: 100, testid: 'incident-assignee', value: i.assignee ?? '' })
    const trimmed = (el) => el.value.trim()
    return h(
      'div',
      { class: 'incident-forms' },
      h(
        'form',
        {
          class: 'card',
          testid: 'incident-note-form',
          onsubmit: (ev) => {
            ev.preventDefault()
            if (trimmed(note) !== '') void save({ note: trimmed(note) })
          },
        },
        field(t('incidents.note'), note),
        h('button', { type: 'submit', testid: 'incident-note-submit' }, t('incidents.addNote')),
      ),
      h(
        'form',
        {
          class: 'card',
          testid: 'incident-root-cause-form',
          onsubmit: (ev) => {
            ev.preventDefault()
            if (trimmed(rootCause) !== '') void save({ rootCause: trimmed(rootCause) })
          },
        },
        field(t('incidents.rootCause'), rootCause),
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'submit', class: 'primary', testid: 'incident-root-cause-submit' }, t('incidents.saveRootCause')),
          h(
            'button',
            {
              type: 'button',
              testid: 'incident-close',
              onclick: () => {
                const cause = trimmed(rootCause)
                void save({ status: 'closed', ...(cause !== '' && cause !== (i.rootCause ?? '') ? { rootCause: cause } : {}) })
              },
            },
            t('incidents.close'),
          ),
        ),
      ),
      h(
        'form',
        {
          class: 'card',
          testid: 'incident-assignee-form',
          onsubmit: (ev) => {
            ev.preventDefault()
            void save({ assignee: trimmed(assignee) === '' ? null : trimmed(assignee) })
          },
        },
        field(t('incidents.assignee'), assignee),
        h('button', { type: 'submit', testid: 'incident-assignee-submit' }, t('incidents.saveAssignee')),
      ),
    )
  }

  function draw(detail) {
    current = detail
    const i = detail.incident
    const facts = [
      ['incidents.status', statusBadge(i.status, 'incident-status')],
      ['alerts.source', h('a', { href: `#/sources/${encodeURIComponent(i.sourceId)}` }, i.sourceName ?? i.sourceId)],
      ['source.district', i.district ?? ''],
      ['source.operator', i.operator ?? ''],
      ['incidents.occurredAt', formatTime(i.occurredAt)],
      ['incidents.recoveredAt', formatTime(i.recoveredAt)],
      ['incidents.closedAt', formatTime(i.closedAt)],
      ['incidents.duration', i.durationSeconds === null ? '' : formatSpan(i.durationSeconds * 1000)],
      ['incidents.scope', scopeText(i.scope)],
      ['incidents.missing', i.scope.expectedMissing === null ? '' : formatNumber(i.scope.expectedMissing)],
      ['incidents.assignee', h('span', { testid: 'incident-assignee-value' }, i.assignee ?? '')],
      ['incidents.rootCause', h('span', { testid: 'incident-root-cause-value', class: 'wrap' }, i.rootCause ?? '')],
    ]
    fill(content, 
      h('h1', { testid: 'incident-title' }, `#${i.id} ${i.title}`),
      h('div', { class: 'incident-grid' },
        h('dl', { class: 'facts card' }, facts.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v)])),
        forms(i),
      ),
      h('h2', {}, t('incidents.timeline')),
      h(
        'ol',
        { class: 'timeline', testid: 'incident-timeline' },
        detail.timeline.map((e) =>
          h(
            'li',
            { class: `timeline-${e.kind}` },
            h('time', { datetime: e.at }, formatTime(e.at)),
            h('span', { class: 'timeline-kind' }, label('timeline', e.kind)),
            h('span', { class: 'timeline-actor' }, e.actor),
            h('span', { class: 'timeline-message wrap' }, e.message),
          ),
        ),
      ),
      h('h2', {}, t('incidents.alerts')),
      detail.alerts.length === 0
        ? h('p', { class: 'muted' }, t('app.none'))
        : h(
            'ul',
            { class: 'plain' },
            detail.alerts.map((a) =>
              h('li', {}, stateBadge(a.state), ' ', a.entityId ?? t('alerts.wholeSource'), ' · ', label('alerts.status', a.status), ' · ', formatTime(a.startsAt), a.endsAt ? ` → ${formatTime(a.endsAt)}` : ''),
            ),
          ),
    )
  }

  async function load() {
    try {
      draw(await get(`/incidents/${id}`))
    } catch (err) {
      fill(content, notice('error', errorText(err), 'incident-error'))
    }
  }

  void load()
  return { el }
}
