// The alert inbox: firing alerts first, acknowledge with a comment (stops
// escalation; recorded on the incident timeline under the operator's name),
// silence a source or one entity for a while with a reason.

import { ApiError, get, post, query, serverNow } from '../api.js'
import { field, fill, formatAge, formatSpan, formatTime, h, notice, select, stateBadge } from '../dom.js'
import { label, t } from '../i18n.js'

const PAGE = 50
const DURATIONS = ['30m', '1h', '4h', '12h', '1d']

function errorText(err) {
  if (err instanceof ApiError && err.status === 403) return t('app.forbidden')
  return t('app.error', { message: err.message })
}

export function alertsView({ route, me, can }) {
  const state = {
    status: route.query.get('status') ?? 'firing',
    sourceId: route.query.get('sourceId') ?? '',
    offset: 0,
  }
  const message = h('div', { class: 'messages' })
  const body = h('div', { class: 'table-wrap' })
  const pager = h('div', { class: 'pager' })
  const el = h(
    'section',
    { class: 'alerts', testid: 'alerts' },
    h(
      'div',
      { class: 'toolbar' },
      h('h1', {}, t('alerts.title')),
      field(
        t('alerts.status'),
        select(
          {
            testid: 'alerts-status',
            onchange: (ev) => {
              state.status = ev.target.value
              state.offset = 0
              void load()
            },
          },
          [['firing', t('alerts.status.firing')], ['resolved', t('alerts.status.resolved')], ['', t('app.all')]],
          state.status,
        ),
      ),
      state.sourceId === '' ? null : h('span', { class: 'muted' }, `${t('alerts.source')}: ${state.sourceId}`),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', testid: 'alerts-refresh', onclick: () => void load() }, t('app.refresh')),
    ),
    message,
    body,
    pager,
  )

  function say(kind, text, testid) {
    fill(message, notice(kind, text, testid))
  }

  function ackForm(alert, row) {
    const comment = h('textarea', { rows: 2, maxlength: 2000, testid: 'ack-comment', placeholder: t('alerts.ackComment') })
    const submit = h('button', { type: 'submit', class: 'primary', testid: 'ack-submit' }, t('alerts.ackSubmit'))
    const form = h(
      'form',
      {
        class: 'inline-form',
        testid: `ack-form-${alert.id}`,
        onsubmit: async (ev) => {
          ev.preventDefault()
          submit.disabled = true
          try {
            const text = comment.value.trim()
            await post(`/alerts/${alert.id}/ack`, { by: me.username, ...(text === '' ? {} : { comment: text }) })
            say('ok', t('alerts.ackBy', { by: me.username, at: formatTime(new Date(serverNow()).toISOString()) }), 'ack-done')
            await load()
          } catch (err) {
            say('error', errorText(err), 'ack-error')
            submit.disabled = false
          }
        },
      },
      field(t('alerts.ackComment'), comment),
      h('div', { class: 'actions' }, submit, h('button', { type: 'button', onclick: () => row.remove() }, t('app.cancel'))),
    )
    return form
  }

  function silenceForm(alert, row) {
    const scope = select({ testid: 'silence-scope' }, [['source', t('alerts.silenceScope.source')], ...(alert.entityId === null ? [] : [['entity', t('alerts.silenceScope.entity')]])], alert.entityId === null ? 'source' : 'entity')
    const duration = select({ testid: 'silence-duration' }, DURATIONS.map((d) => [d, t(`duration.${d}`)]), '1h')
    const reason = h('input', { required: true, maxlength: 2000, testid: 'silence-reason' })
    const submit = h('button', { type: 'submit', class: 'primary', testid: 'silence-submit' }, t('alerts.silenceSubmit'))
    return h(
      'form',
      {
        class: 'inline-form',
        testid: `silence-form-${alert.id}`,
        onsubmit: async (ev) => {
          ev.preventDefault()
          submit.disabled = true
          const matchers = { sourceId: alert.sourceId }
          if (scope.value === 'entity' && alert.entityId !== null) matchers.entityId = alert.entityId
          try {
            const s = await post('/silences', { matchers, duration: duration.value, reason: reason.value.trim(), createdBy: me.username })
            say('ok', t('alerts.silenceCreated', { id: s.id, until: formatTime(s.endsAt) }), 'silence-done')
            await load()
          } catch (err) {
            say('error', errorText(err), 'silence-error')
            submit.disabled = false
          }
        },
      },
      field(t('alerts.silenceScope'), scope),
      field(t('alerts.silenceDuration'), duration),
      field(t('alerts.silenceReason'), reason),
      h('div', { class: 'actions' }, submit, h('button', { type: 'button', onclick: () => row.remove() }, t('app.cancel'))),
    )
  }

  function openForm(tr, alert, make) {
    tr.parentElement?.querySelectorAll('tr.form-row').forEach((r) => r.remove())
    const row = h('tr', { class: 'form-row' })
    row.append(h('td', { colspan: 8 }, make(alert, row)))
    tr.after(row)
    row.querySelector('textarea, input')?.focus()
  }

  function row(a) {
    const firing = a.status === 'firing'
    const end = a.endsAt === null ? serverNow() : Date.parse(a.endsAt)
    const tr = h(
      'tr',
      { testid: `alert-row-${a.id}`, class: [firing ? 'firing' : 'resolved', a.acknowledged ? 'acked' : null], 'data-status': a.status },
      h('td', {}, stateBadge(a.state), firing ? null : h('div', { class: 'muted' }, t('alerts.status.resolved'))),
      h('td', {}, h('a', { href: `#/sources/${encodeURIComponent(a.sourceId)}` }, a.annotations.source ?? a.sourceId), h('div', { class: 'muted' }, a.sourceId)),
      h('td', {}, a.entityId === null ? h('span', { class: 'muted' }, t('alerts.wholeSource')) : `${a.entityId}${a.entityKind ? ` · ${label('entity', a.entityKind)}` : ''}`),
      h('td', { class: 'wrap' }, a.annotations.summary ?? '', a.escalationLevel > 0 ? h('div', { class: 'muted' }, t('alerts.escalation', { n: a.escalationLevel })) : null),
      h('td', {}, formatTime(a.startsAt), h('div', { class: 'muted' }, firing ? formatAge(end - Date.parse(a.startsAt)) : formatSpan(end - Date.parse(a.startsAt)))),
      h(
        'td',
        { testid: `alert-ack-state-${a.id}` },
        a.acknowledged
          ? [h('div', {}, t('alerts.ackBy', { by: a.acknowledged.by, at: formatTime(a.acknowledged.at) })), a.acknowledged.comment ? h('div', { class: 'muted wrap' }, a.acknowledged.comment) : null]
          : null,
        a.silencedBy === null ? null : h('div', { class: 'muted' }, t('alerts.silenced', { id: a.silencedBy })),
      ),
      h('td', {}, a.incidentId === null ? null : h('a', { href: `#/incidents/${a.incidentId}`, testid: `alert-incident-${a.id}` }, t('alerts.incident', { id: a.incidentId }))),
      h(
        'td',
        { class: 'row-actions' },
        firing && can('alerts:write') && a.acknowledged === null
          ? h('button', { type: 'button', testid: `alert-ack-${a.id}`, onclick: () => openForm(tr, a, ackForm) }, t('alerts.ack'))
          : null,
        firing && can('alerts:write') ? h('button', { type: 'button', testid: `alert-silence-${a.id}`, onclick: () => openForm(tr, a, silenceForm) }, t('alerts.silence')) : null,
      ),
    )
    return tr
  }

  async function load() {
    try {
      const page = await get(`/alerts${query({ status: state.status, sourceId: state.sourceId, limit: PAGE, offset: state.offset })}`)
      if (page.items.length === 0) {
        fill(body, h('p', { class: 'muted', testid: 'alerts-empty' }, t('alerts.empty')))
      } else {
        fill(body, 
          h(
            'table',
            { class: 'table', testid: 'alerts-table' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['board.state', 'alerts.source', 'alerts.entity', 'alerts.summary', 'alerts.startsAt', 'alerts.acknowledged', 'incidents.headline', 'alerts.actions'].map((k) => h('th', {}, t(k))),
              ),
            ),
            h('tbody', {}, page.items.map(row)),
          ),
        )
      }
      fill(pager, 
        h('button', { type: 'button', disabled: state.offset === 0, onclick: () => ((state.offset = Math.max(0, state.offset - PAGE)), void load()) }, t('app.prev')),
        h('span', { class: 'muted' }, t('app.page', { from: page.total === 0 ? 0 : state.offset + 1, to: state.offset + page.items.length, total: page.total })),
        h('button', { type: 'button', disabled: state.offset + PAGE >= page.total, onclick: () => ((state.offset += PAGE), void load()) }, t('app.next')),
      )
    } catch (err) {
      say('error', errorText(err), 'alerts-error')
    }
  }

  fill(body, h('p', { class: 'muted' }, t('app.loading')))
  void load()
  return { el }
}
