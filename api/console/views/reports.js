// Reports for the bureau: the monthly data-synchronisation report in HTML,
// XLSX, CSV or JSON for a chosen month, the quarterly county onboarding list,
// and the archive of generated reports. Downloads are plain links: the
// session cookie goes with them.

import { get, query, serverNow } from '../api.js'
import { field, fill, formatNumber, formatTime, h, localDate, notice, select } from '../dom.js'
import { label, t } from '../i18n.js'

const FORMATS = ['html', 'xlsx', 'csv', 'json']
const ONBOARDING_STATUSES = ['planned', 'connecting', 'onboarded', 'suspended']

function previousMonth(today) {
  const [y, m] = today.split('-').map(Number)
  return m === 1 ? `${y - 1}-12` : `${y}-${String(m - 1).padStart(2, '0')}`
}

function currentQuarter(today) {
  const [y, m] = today.split('-').map(Number)
  return `${y}Q${Math.floor((m - 1) / 3) + 1}`
}

function quarters(today, back = 8) {
  let [y, q] = currentQuarter(today).split('Q').map(Number)
  const out = []
  for (let i = 0; i < back; i++) {
    out.push(`${y}Q${q}`)
    if (--q === 0) [y, q] = [y - 1, 4]
  }
  return out
}

/** The file name the API gives the report (the HTML and JSON answers are inline, so the link names it). */
function fileName(kind, period, lang, format) {
  return `citysync-${kind}-${period}${lang === 'en' ? '-en' : ''}.${format}`
}

function downloadLinks(kind, path, params, period, lang, testid) {
  return FORMATS.map((format) =>
    h('a', { class: 'button', href: `/api/v1/reports/${path}${query({ ...params, format, lang })}`, download: fileName(kind, period, lang, format), testid: `${testid}-${format}` }, format.toUpperCase()),
  )
}

export function reportsView() {
  const today = localDate(serverNow())

  // Monthly sync report
  const month = h('input', { type: 'month', value: previousMonth(today), required: true, testid: 'report-month' })
  const syncLang = select({ testid: 'report-lang' }, [['zh', t('reports.lang.zh')], ['en', t('reports.lang.en')]], 'zh')
  const syncLinks = h('div', { class: 'actions downloads', testid: 'report-sync-downloads' })
  function drawSyncLinks() {
    const m = /^\d{4}-\d{2}$/.test(month.value) ? month.value : previousMonth(today)
    fill(syncLinks, h('span', { class: 'field-label' }, t('reports.download')), downloadLinks('sync', 'sync', { month: m }, m, syncLang.value, 'report-sync'))
  }
  month.addEventListener('input', drawSyncLinks)
  syncLang.addEventListener('change', drawSyncLinks)
  drawSyncLinks()

  // Quarterly onboarding list
  const quarter = select({ testid: 'onboarding-quarter' }, quarters(today).map((q) => [q, q]), currentQuarter(today))
  const onboardingLinks = h('div', { class: 'actions downloads' })
  const onboardingTable = h('div', { class: 'table-wrap', testid: 'onboarding-table' })
  function drawOnboardingLinks() {
    fill(onboardingLinks, h('span', { class: 'field-label' }, t('reports.download')), downloadLinks('onboarding', 'onboarding', { quarter: quarter.value }, quarter.value, 'zh', 'report-onboarding'))
  }
  async function showOnboarding() {
    fill(onboardingTable, h('p', { class: 'muted' }, t('app.loading')))
    try {
      const list = await get(`/reports/onboarding${query({ quarter: quarter.value })}`)
      const row = (name, counts, total, inQuarter, strong) =>
        h('tr', { class: strong ? 'total' : null }, h('td', {}, name), ONBOARDING_STATUSES.map((s) => h('td', { class: 'num' }, formatNumber(counts[s] ?? 0))), h('td', { class: 'num' }, formatNumber(total)), h('td', { class: 'num' }, formatNumber(inQuarter)))
      fill(onboardingTable, 
        h(
          'table',
          { class: 'table' },
          h('thead', {}, h('tr', {}, h('th', {}, t('reports.county')), ONBOARDING_STATUSES.map((s) => h('th', {}, label('reports.onboarding', s))), h('th', {}, t('reports.total')), h('th', {}, t('reports.onboardedInQuarter')))),
          h('tbody', {}, list.counties.map((c) => row(c.county, c.counts, c.total, c.onboardedInQuarter, false)), row(t('reports.total'), list.totals, list.totals.total, list.totals.onboardedInQuarter, true)),
        ),
      )
    } catch (err) {
      fill(onboardingTable, notice('error', t('app.error', { message: err.message })))
    }
  }
  quarter.addEventListener('change', () => {
    drawOnboardingLinks()
    void showOnboarding()
  })
  drawOnboardingLinks()

  // Archive
  const archive = h('div', { class: 'table-wrap', testid: 'report-archive' }, h('p', { class: 'muted' }, t('app.loading')))
  async function loadArchive() {
    try {
      const { items } = await get('/reports/archive?limit=50')
      fill(archive, 
        items.length === 0
          ? h('p', { class: 'muted' }, t('reports.emptyArchive'))
          : h(
              'table',
              { class: 'table' },
              h('thead', {}, h('tr', {}, ['reports.kind', 'reports.period', 'reports.trigger', 'reports.generatedAt', 'reports.revision', 'reports.download'].map((k) => h('th', {}, t(k))))),
              h(
                'tbody',
                {},
                items.map((e) => {
                  const param = e.kind === 'sync' ? { month: e.period } : { quarter: e.period }
                  return h(
                    'tr',
                    {},
                    h('td', {}, label('reports.kind', e.kind)),
                    h('td', {}, e.period),
                    h('td', {}, label('reports.trigger', e.trigger)),
                    h('td', {}, formatTime(e.generatedAt)),
                    h('td', { class: 'num' }, String(e.revision)),
                    h('td', {}, h('a', { href: `/api/v1/reports/${e.kind}${query({ ...param, format: 'xlsx' })}`, download: fileName(e.kind, e.period, 'zh', 'xlsx') }, 'XLSX')),
                  )
                }),
              ),
            ),
      )
    } catch (err) {
      fill(archive, notice('error', t('app.error', { message: err.message })))
    }
  }
  void loadArchive()

  const el = h(
    'section',
    { class: 'reports', testid: 'reports' },
    h('h1', {}, t('reports.title')),
    h('div', { class: 'card' }, h('h2', {}, t('reports.sync')), h('div', { class: 'filters' }, field(t('reports.month'), month), field(t('reports.lang'), syncLang)), syncLinks),
    h(
      'div',
      { class: 'card' },
      h('h2', {}, t('reports.onboarding')),
      h('div', { class: 'filters' }, field(t('reports.quarter'), quarter), h('button', { type: 'button', testid: 'onboarding-show', onclick: () => void showOnboarding() }, t('reports.show'))),
      onboardingLinks,
      onboardingTable,
    ),
    h('div', { class: 'card' }, h('h2', {}, t('reports.archive')), archive),
  )
  return { el }
}
