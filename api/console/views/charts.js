// Occupancy and turnover of a district or one car park over a range, by
// hour, day or month (GET /analytics/parking/occupancy | turnover), drawn
// with ECharts. The ECharts bundle is served by the API itself and loaded
// only when this view opens.

import { ApiError, get, query, serverNow } from '../api.js'
import { field, fill, formatNumber, h, localDate, notice, select } from '../dom.js'
import { t } from '../i18n.js'

const ECHARTS_SRC = '/console/vendor/echarts.min.js'
const DAY = 86_400_000

let echartsLoading = null

function loadEcharts() {
  if (window.echarts) return Promise.resolve(window.echarts)
  echartsLoading ??= new Promise((resolve, reject) => {
    const script = document.createElement('script')
    script.src = ECHARTS_SRC
    script.onload = () => resolve(window.echarts)
    script.onerror = () => {
      echartsLoading = null
      reject(new Error(`${ECHARTS_SRC} did not load`))
    }
    document.head.append(script)
  })
  return echartsLoading
}

/** 2026-11-16T00:00:00+08:00 → 2026-11-16 00:00 */
function short(local) {
  return local.slice(0, 16).replace('T', ' ')
}

function percent(rate) {
  return rate === null ? null : Math.round(rate * 1000) / 10
}

/** Chart options: occupancy as lines (rate and peak, in %), turnover as bars (sessions) with the rate as a line. */
function chartOption(metric, items, wall) {
  const fontSize = wall ? 22 : 12
  const base = {
    // Rich-text tooltips: the HTML ones carry inline styles, which the page's CSP refuses.
    tooltip: { trigger: 'axis', renderMode: 'richText' },
    legend: { top: 0, textStyle: { fontSize } },
    grid: { left: 60, right: 60, top: 40, bottom: 40, containLabel: true },
    xAxis: { type: 'category', data: items.map((i) => i.bucket), axisLabel: { fontSize } },
    textStyle: { fontSize },
  }
  if (metric === 'occupancy') {
    return {
      ...base,
      yAxis: { type: 'value', name: '%', min: 0, axisLabel: { fontSize } },
      series: [
        { name: t('charts.occupancyRate'), type: 'line', smooth: true, data: items.map((i) => percent(i.occupancyRate)) },
        { name: t('charts.peakOccupancyRate'), type: 'line', smooth: true, lineStyle: { type: 'dashed' }, data: items.map((i) => percent(i.peakOccupancyRate)) },
      ],
    }
  }
  return {
    ...base,
    yAxis: [
      { type: 'value', name: t('charts.sessions'), min: 0, axisLabel: { fontSize } },
      { type: 'value', name: t('charts.turnoverRate'), min: 0, axisLabel: { fontSize } },
    ],
    series: [
      { name: t('charts.sessions'), type: 'bar', data: items.map((i) => i.sessions) },
      { name: t('charts.turnoverRate'), type: 'line', yAxisIndex: 1, data: items.map((i) => (i.turnoverRate === null ? null : Math.round(i.turnoverRate * 100) / 100)) },
    ],
  }
}

export function chartsView({ wall }) {
  const today = localDate(serverNow())
  const tomorrow = localDate(Date.parse(`${today}T12:00:00+08:00`) + DAY)
  const weekAgo = localDate(Date.parse(`${today}T12:00:00+08:00`) - 6 * DAY)

  const metric = select({ testid: 'chart-metric' }, [['occupancy', t('charts.metric.occupancy')], ['turnover', t('charts.metric.turnover')]], 'occupancy')
  const scope = select({ testid: 'chart-scope' }, [['district', t('charts.scope.district')], ['lot', t('charts.scope.lot')]], 'district')
  const district = select({ testid: 'chart-district' }, [], '')
  const lots = h('datalist', { id: 'chart-lots' })
  const lot = h('input', { list: 'chart-lots', testid: 'chart-lot', placeholder: 'P001' })
  const from = h('input', { type: 'date', value: weekAgo, testid: 'chart-from' })
  const to = h('input', { type: 'date', value: tomorrow, testid: 'chart-to' })
  const granularity = select({ testid: 'chart-granularity' }, ['hour', 'day', 'month'].map((g) => [g, t(`charts.granularity.${g}`)]), 'day')
  const districtField = field(t('charts.scope.district'), district)
  const lotField = field(t('charts.scope.lot'), lot)
  lotField.hidden = true
  scope.addEventListener('change', () => {
    districtField.hidden = scope.value !== 'district'
    lotField.hidden = scope.value !== 'lot'
  })

  const message = h('div', { class: 'messages' })
  const meta = h('p', { class: 'muted', testid: 'chart-meta' })
  const canvas = h('div', { class: 'chart', testid: 'chart', role: 'img', 'aria-label': t('charts.title') })
  let chart = null
  let disposed = false

  async function show(ev) {
    ev?.preventDefault()
    fill(message)
    const where = scope.value === 'district' ? { district: district.value } : { lot: lot.value.trim() }
    if (Object.values(where)[0] === '') {
      fill(message, notice('info', t('charts.chooseScope')))
      return
    }
    try {
      const [echarts, answer] = await Promise.all([loadEcharts(), get(`/analytics/parking/${metric.value}${query({ ...where, from: from.value, to: to.value, granularity: granularity.value })}`)])
      if (disposed) return
      chart ??= echarts.init(canvas)
      chart.clear()
      chart.setOption(chartOption(metric.value, answer.items, wall))
      const total = metric.value === 'occupancy' ? `${t('charts.occupancyRate')} ${answer.totals.occupancyRate === null ? '–' : `${formatNumber(percent(answer.totals.occupancyRate), 1)}%`}` : `${t('charts.sessions')} ${formatNumber(answer.totals.sessions ?? 0)}`
      fill(meta, `${short(answer.from)} – ${short(answer.to)} · ${total}${answer.dataUntil ? ` · ${t('charts.dataUntil', { time: answer.dataUntil })}` : ''}`)
      if (answer.items.length === 0) fill(message, notice('info', t('charts.noData'), 'chart-empty'))
    } catch (err) {
      fill(message, notice('error', err instanceof ApiError && err.status === 403 ? t('app.forbidden') : t('app.error', { message: err.message }), 'chart-error'))
    }
  }

  async function loadScopes() {
    try {
      const { items } = await get('/sources')
      const districts = [...new Set(items.map((s) => s.district).filter(Boolean))].sort((a, b) => a.localeCompare(b, 'zh-CN'))
      fill(district, ...districts.map((d) => h('option', { value: d }, d)))
      // Something to look at straight away: the first district over the last week.
      if (districts.length > 0) void show()
      const parking = items.filter((s) => s.kind.startsWith('parking') || s.kind.startsWith('county'))
      const ids = new Set()
      for (const s of parking) {
        const detail = await get(`/freshness/${encodeURIComponent(s.id)}?limit=2000`).catch(() => null)
        for (const e of detail?.entities.items ?? []) if (e.kind === 'car-park') ids.add(e.id)
      }
      fill(lots, ...[...ids].sort().map((id) => h('option', { value: id })))
    } catch {
      // the fields still take typed values
    }
  }

  const onResize = () => chart?.resize()
  window.addEventListener('resize', onResize)
  void loadScopes()

  const el = h(
    'section',
    { class: 'charts', testid: 'charts' },
    h('h1', {}, t('charts.title')),
    h(
      'form',
      { class: 'filters card', onsubmit: show, testid: 'chart-form' },
      field(t('charts.metric'), metric),
      field(t('charts.scope'), scope),
      districtField,
      lotField,
      lots,
      field(t('charts.from'), from),
      field(t('charts.to'), to),
      field(t('charts.granularity'), granularity),
      h('button', { type: 'submit', class: 'primary', testid: 'chart-show' }, t('charts.show')),
    ),
    message,
    meta,
    canvas,
  )
  return {
    el,
    dispose() {
      disposed = true
      window.removeEventListener('resize', onResize)
      chart?.dispose()
      chart = null
    },
  }
}
