// Small DOM and formatting helpers. Elements are built with h(), never from
// HTML strings: text from the API is always set as text, and handlers are
// attached with addEventListener (the page's CSP forbids inline scripts and
// inline handlers).

import { label, locale, t } from './i18n.js'

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'open'])

/**
 * h('button', { class: 'primary', testid: 'login-submit', onclick: fn }, 'text', child, [more])
 * `testid` becomes data-testid; `on<event>` functions become listeners;
 * null, undefined and false attributes and children are left out.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value)
    else if (key === 'testid') el.dataset.testid = value
    else if (key === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value
    else if (PROPERTIES.has(key)) el[key] = value
    else el.setAttribute(key, value === true ? '' : String(value))
  }
  append(el, children)
  return el
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    if (Array.isArray(child)) append(el, child)
    else el.append(child instanceof Node ? child : String(child))
  }
}

export function clear(el) {
  el.replaceChildren()
  return el
}

/** Replaces el's children; arrays are flattened, null and false left out (as in h()). */
export function fill(el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

/** A <select> whose options are [value, text] pairs. */
export function select(attrs, options, selected) {
  return h(
    'select',
    attrs,
    options.map(([value, text]) => h('option', { value, selected: value === selected }, text)),
  )
}

/** A labelled form field. */
export function field(text, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, text), control, hint ? h('small', { class: 'hint' }, hint) : null)
}

/** A message line: kind is 'error', 'ok' or 'info'. */
export function notice(kind, text, testid) {
  return h('p', { class: ['notice', `notice-${kind}`], role: kind === 'error' ? 'alert' : 'status', testid }, text)
}

// ---------------------------------------------------------------------------
// Freshness states

export const STATES = ['OK', 'LATE', 'STALLED', 'STOPPED', 'SKEWED', 'QUIET', 'MAINTENANCE']

/** The badge of a state: the colour comes from the state-* class in console.css. */
export function stateBadge(state, testid) {
  return h('span', { class: ['badge', `state-${state}`], 'data-state': state, testid }, label('state', state))
}

// ---------------------------------------------------------------------------
// Time. Times are shown in the city's zone, as the reports and the ledger export do.

export const ZONE = 'Asia/Shanghai'

const partsCache = new Map()
function formatter(opts) {
  const key = JSON.stringify(opts)
  let f = partsCache.get(key)
  if (f === undefined) partsCache.set(key, (f = new Intl.DateTimeFormat('en-CA', { timeZone: ZONE, hourCycle: 'h23', ...opts })))
  return f
}

function parts(ms, opts) {
  return Object.fromEntries(formatter(opts).formatToParts(new Date(ms)).map((p) => [p.type, p.value]))
}

/** 2026-11-21 12:01:05 in Asia/Shanghai; '' for null. */
export function formatTime(iso) {
  if (iso === null || iso === undefined) return ''
  const p = parts(Date.parse(iso), { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' })
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`
}

export function formatClock(ms) {
  const p = parts(ms, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
  return `${p.hour}:${p.minute}:${p.second}`
}

/** YYYY-MM-DD of an instant in the city's zone. */
export function localDate(ms) {
  const p = parts(ms, { year: 'numeric', month: '2-digit', day: '2-digit' })
  return `${p.year}-${p.month}-${p.day}`
}

/** A span of time for people: 45 秒, 12 分钟, 3 小时 5 分, 2 天 3 小时. */
export function formatSpan(ms, prefix = 'span') {
  const s = Math.max(0, Math.round(ms / 1000))
  if (prefix === 'age' && s < 5) return t('age.now')
  if (s < 60) return t(`${prefix}.seconds`, { n: s })
  const m = Math.floor(s / 60)
  if (m < 60) return t(`${prefix}.minutes`, { n: m })
  const hours = Math.floor(m / 60)
  if (hours < 24) return m % 60 === 0 ? t(`${prefix}.hoursExact`, { h: hours }) : t(`${prefix}.hours`, { h: hours, m: m % 60 })
  const d = Math.floor(hours / 24)
  return hours % 24 === 0 ? t(`${prefix}.daysExact`, { d }) : t(`${prefix}.days`, { d, h: hours % 24 })
}

/** How long ago, for people: 刚刚, 3 分钟前, 2 小时 5 分前. */
export function formatAge(ms) {
  return ms === null || ms === undefined || Number.isNaN(ms) ? t('age.never') : formatSpan(ms, 'age')
}

export function formatNumber(n, digits = 0) {
  if (n === null || n === undefined) return ''
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(n)
}
