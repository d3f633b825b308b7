// The source health board: one tile per source, coloured by its freshness
// state, with a chip per entity (car park, station, terminal) in its own
// colour and the age of the newest data. Filters live in the address
// (#/board?district=横琴&state=LATE) so a wall screen can be pointed at a
// view; it refreshes every 15 s (refresh=N seconds to change that).

import { get, serverNow } from '../api.js'
import { clear, field, fill, formatAge, formatClock, formatSpan, formatTime, h, notice, select, stateBadge, STATES } from '../dom.js'
import { label, t } from '../i18n.js'

const DEFAULT_REFRESH_S = 15
const DETAIL_CONCURRENCY = 4
const FILTERS = ['district', 'operator', 'kind', 'state']
/** Above this many entities a tile shows them as small squares without their ids. */
const CHIP_TEXT_LIMIT = 24

/** Runs fn over items with at most `limit` calls under way. */
async function mapLimited(items, limit, fn) {
  const out = new Array(items.length)
  let next = 0
  async function worker() {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i])
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

function distinct(items, key) {
  return [...new Set(items.map((i) => i[key]).filter((v) => v !== null && v !== undefined && v !== ''))].sort((a, b) => String(a).localeCompare(String(b), 'zh-CN'))
}

export function boardView({ route, wall }) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, route.query.get(f) ?? '']))
  const refreshS = Math.max(1, Number(route.query.get('refresh')) || DEFAULT_REFRESH_S)

  let list = null
  /** sourceId → entities, from the latest refresh. */
  let entities = new Map()
  let error = null
  let loading = false
  let fetchedAt = null
  /** [element, ISO time] pairs whose age text is kept current between refreshes. */
  let ages = []

  const toolbar = h('div', { class: 'toolbar' })
  const summary = h('div', { class: 'summary', testid: 'board-summary' })
  const status = h('div', { class: 'board-status' })
  const tiles = h('div', { class: 'tiles', testid: 'board-tiles', 'aria-live': 'polite' })
  const el = h('section', { class: 'board', testid: 'board' }, toolbar, summary, status, tiles)

  function setFilter(name, value) {
    filters[name] = value
    const q = new URLSearchParams(route.query)
    if (value === '') q.delete(name)
    else q.set(name, value)
    const text = q.toString()
    history.replaceState(null, '', `#/board${text === '' ? '' : `?${text}`}`)
    route.query = q
    drawToolbar()
    draw()
    void loadDetails()
  }

  function matches(item) {
    return (
      (filters.district === '' || item.district === filters.district) &&
      (filters.operator === '' || item.operator === filters.operator) &&
      (filters.kind === '' || item.kind === filters.kind) &&
      (filters.state === '' || item.state === filters.state)
    )
  }

  function visible() {
    if (list === null) return []
    return list.items.filter(matches).sort((a, b) => (a.district ?? '').localeCompare(b.district ?? '', 'zh-CN') || a.name.localeCompare(b.name, 'zh-CN') || a.sourceId.localeCompare(b.sourceId))
  }

  function drawToolbar() {
    const items = list?.items ?? []
    const filterSelect = (name, values, text) =>
      field(
        t(`board.${name}`),
        select({ testid: `filter-${name}`, onchange: (ev) => setFilter(name, ev.target.value) }, [['', t('app.all')], ...values.map((v) => [v, text(v)])], filters[name]),
      )
    const wallHref = `#/board?${new URLSearchParams({ ...Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== '')), wall: wall ? '0' : '1' })}`
    fill(toolbar, 
      h('h1', {}, t('board.title')),
      wall
        ? null
        : h(
            'div',
            { class: 'filters' },
            filterSelect('district', distinct(items, 'district'), (v) => v),
            filterSelect('operator', distinct(items, 'operator'), (v) => v),
            filterSelect('kind', distinct(items, 'kind'), (v) => label('kind', v)),
            filterSelect('state', STATES, (v) => label('state', v)),
          ),
      h('span', { class: 'spacer' }),
      h('span', { class: 'muted', testid: 'board-updated' }, fetchedAt === null ? '' : t('app.updatedAt', { time: formatClock(fetchedAt) })),
      wall ? null : h('button', { type: 'button', testid: 'board-refresh', onclick: () => void load() }, t('app.refresh')),
      h('a', { href: wallHref, class: 'button', testid: 'board-wall' }, wall ? t('board.exitWall') : t('board.wall')),
    )
  }

  function drawSummary() {
    const shown = visible()
    const counts = {}
    for (const i of shown) counts[i.state] = (counts[i.state] ?? 0) + 1
    fill(summary, 
      h('span', { class: 'summary-total' }, t('board.sources', { n: shown.length })),
      STATES.filter((s) => counts[s] > 0).map((s) =>
        h(
          'button',
          {
            type: 'button',
            class: ['summary-state', `state-${s}`, filters.state === s ? 'active' : null],
            testid: `summary-${s}`,
            'aria-pressed': filters.state === s ? 'true' : 'false',
            onclick: () => setFilter('state', filters.state === s ? '' : s),
          },
          label('state', s),
          h('strong', {}, String(counts[s])),
        ),
      ),
      list === null ? null : h('span', { class: 'muted' }, t('board.evaluatedAt', { time: formatTime(list.at) })),
    )
  }

  function entityChips(sourceId) {
    const items = entities.get(sourceId)
    if (items === undefined || items.length === 0) return null
    const dense = items.length > CHIP_TEXT_LIMIT
    return h(
      'ul',
      { class: ['entities', dense ? 'entities-dense' : null], testid: `entities-${sourceId}` },
      items.map((e) =>
        h(
          'li',
          {
            class: ['chip', `state-${e.state}`],
            'data-state': e.state,
            testid: `entity-${sourceId}-${e.id}`,
            title: `${e.id} · ${label('entity', e.kind)} · ${label('state', e.state)} — ${e.reason}`,
          },
          dense ? h('span', { class: 'visually-hidden' }, `${e.id} ${label('state', e.state)}`) : e.id,
        ),
      ),
    )
  }

  function entityCounts(item) {
    const parts = [t('board.entities', { n: item.entities.total ?? 0 })]
    for (const s of STATES) if (item.entities[s] > 0) parts.push(`${label('state', s)} ${item.entities[s]}`)
    return parts.join(' · ')
  }

  function tile(item) {
    const age = h('strong', { testid: `tile-age-${item.sourceId}` }, formatAge(item.lastEventAt === null ? null : serverNow() - Date.parse(item.lastEventAt)))
    if (item.lastEventAt !== null) ages.push([age, item.lastEventAt])
    return h(
      'article',
      { class: ['tile', `state-${item.state}`], 'data-state': item.state, testid: `tile-${item.sourceId}`, title: item.reason },
      h('header', { class: 'tile-head' }, h('a', { class: 'tile-name', href: `#/sources/${encodeURIComponent(item.sourceId)}` }, item.name), stateBadge(item.state, `tile-state-${item.sourceId}`)),
      h('p', { class: 'tile-meta' }, [item.district, item.operator, label('kind', item.kind)].filter(Boolean).join(' · ')),
      h('p', { class: 'tile-age' }, h('span', {}, t('board.newest')), ' ', age),
      h('p', { class: 'tile-delay' }, t('board.delay', { delay: formatSpan(item.delaySeconds * 1000), max: formatSpan(item.maxDelaySeconds * 1000) })),
      item.state === 'OK' ? null : h('p', { class: 'tile-reason' }, item.reason),
      entityChips(item.sourceId),
      h('p', { class: 'tile-counts' }, entityCounts(item)),
    )
  }

  function draw() {
    drawSummary()
    fill(status, error === null ? '' : notice('error', t('app.error', { message: error.message }), 'board-error'))
    if (list === null) {
      if (error === null) fill(tiles, h('p', { class: 'muted' }, t('app.loading')))
      return
    }
    ages = []
    const shown = visible()
    if (shown.length === 0) fill(tiles, h('p', { class: 'muted', testid: 'board-empty' }, t('board.empty')))
    else fill(tiles, ...shown.map(tile))
  }

  async function loadDetails() {
    const ids = visible().map((i) => i.sourceId)
    const details = await mapLimited(ids, DETAIL_CONCURRENCY, (id) =>
      get(`/freshness/${encodeURIComponent(id)}?limit=500`).then(
        (d) => d.entities.items,
        () => undefined,
      ),
    )
    let changed = false
    ids.forEach((id, i) => {
      if (details[i] !== undefined) {
        entities.set(id, details[i])
        changed = true
      }
    })
    if (changed && !disposed) draw()
  }

  async function load() {
    if (loading) return
    loading = true
    try {
      list = await get('/freshness')
      error = null
      fetchedAt = Date.now()
      const present = new Set(list.items.map((i) => i.sourceId))
      entities = new Map([...entities].filter(([id]) => present.has(id)))
    } catch (err) {
      error = err
    } finally {
      loading = false
    }
    if (disposed) return
    drawToolbar()
    draw()
    if (error === null) await loadDetails()
  }

  let disposed = false
  drawToolbar()
  draw()
  void load()
  const refresher = setInterval(() => void load(), refreshS * 1000)
  const ticker = setInterval(() => {
    for (const [node, iso] of ages) node.textContent = formatAge(serverNow() - Date.parse(iso))
  }, 1000)

  return {
    el,
    dispose() {
      disposed = true
      clearInterval(refresher)
      clearInterval(ticker)
      clear(tiles)
    },
  }
}
