// The operator console: session, layout and hash routing. Each view is a
// function of a context that returns its element and, where it polls or
// holds a chart, a dispose() that the router calls when the view is left.
//
//   #/login                     log in (username, password, one-time code)
//   #/board[?wall=1&refresh=15]  source health board (wall screen: wall=1, or any window ≥ 2560 px wide)
//   #/alerts[?status=firing]    alert inbox: acknowledge, silence
//   #/incidents, #/incidents/ID the incident ledger and one incident
//   #/sources/ID                one source: status, cursor, errors, actions
//   #/reports                   monthly report, onboarding list, archive
//   #/charts                    occupancy and turnover

import { get, post, whenUnauthorized } from './api.js'
import { fill, h } from './dom.js'
import { label, lang, setLang, t } from './i18n.js'
import { allowed } from './permissions.js'
import { alertsView } from './views/alerts.js'
import { boardView } from './views/board.js'
import { chartsView } from './views/charts.js'
import { incidentView, incidentsView } from './views/incidents.js'
import { loginView } from './views/login.js'
import { reportsView } from './views/reports.js'
import { sourceView } from './views/source.js'

/** Width from which the board turns into the wall-screen layout on its own. */
const WALL_MIN_WIDTH = 2560

const NAV = [
  { id: 'board', href: '#/board', text: 'nav.board' },
  { id: 'alerts', href: '#/alerts', text: 'nav.alerts' },
  { id: 'incidents', href: '#/incidents', text: 'nav.incidents' },
  { id: 'reports', href: '#/reports', text: 'nav.reports', permission: 'reports:read' },
  { id: 'charts', href: '#/charts', text: 'nav.charts', permission: 'analytics:read' },
]

const root = document.getElementById('app')
let me = null
let current = null
let firing = null
/** Set when the API ended the session under way: the login says so. */
let sessionEnded = false

function can(permission) {
  return allowed(me, permission)
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '')
  const at = raw.indexOf('?')
  const path = at < 0 ? raw : raw.slice(0, at)
  return {
    hash: `#/${raw}`,
    parts: path.split('/').filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(at < 0 ? '' : raw.slice(at + 1)),
  }
}

function navigate(hash) {
  if (location.hash === hash) render()
  else location.hash = hash
}

function viewFor(route) {
  const [first, id] = route.parts
  switch (first ?? 'board') {
    case 'board':
      return { nav: 'board', view: boardView }
    case 'alerts':
      return { nav: 'alerts', view: alertsView }
    case 'incidents':
      return id === undefined ? { nav: 'incidents', view: incidentsView } : { nav: 'incidents', view: incidentView }
    case 'sources':
      return id === undefined ? { nav: 'board', view: boardView } : { nav: 'board', view: sourceView }
    case 'reports':
      return { nav: 'reports', view: reportsView }
    case 'charts':
      return { nav: 'charts', view: chartsView }
    default:
      return { nav: null, view: () => ({ el: h('p', { class: 'notice notice-error' }, t('app.notFound')) }) }
  }
}

function isWall(route) {
  if ((route.parts[0] ?? 'board') !== 'board') return false
  const wall = route.query.get('wall')
  return wall === '1' || (wall !== '0' && window.innerWidth >= WALL_MIN_WIDTH)
}

function header(active) {
  const user = me === null ? null : h('span', { class: 'user', testid: 'user' }, t('nav.user', { username: me.username, role: label('role', me.role) }))
  return h(
    'header',
    { class: 'topbar', testid: 'topbar' },
    h('a', { class: 'brand', href: '#/board' }, t('app.brand')),
    me === null
      ? null
      : h(
          'nav',
          { class: 'nav' },
          NAV.filter((n) => n.permission === undefined || can(n.permission)).map((n) =>
            h(
              'a',
              { href: n.href, testid: `nav-${n.id}`, 'aria-current': n.id === active ? 'page' : null },
              t(n.text),
              n.id === 'alerts' && firing > 0 ? h('span', { class: 'count', testid: 'nav-alerts-count' }, String(firing)) : null,
            ),
          ),
        ),
    h('span', { class: 'spacer' }),
    user,
    h('button', { type: 'button', class: 'link', testid: 'lang-toggle', onclick: toggleLang }, t('nav.lang')),
    me === null ? null : h('button', { type: 'button', class: 'link', testid: 'logout', onclick: logout }, t('nav.logout')),
  )
}

function toggleLang() {
  setLang(lang() === 'zh' ? 'en' : 'zh')
  render()
}

async function logout() {
  try {
    await post('/auth/logout')
  } catch {
    // the session may be gone already; the console forgets it either way
  }
  me = null
  navigate('#/login')
}

async function refreshFiring() {
  if (me === null) return
  try {
    const { total } = await get('/alerts?status=firing&limit=1')
    if (total !== firing) {
      firing = total
      const nav = root.querySelector('header.topbar')
      if (nav !== null) nav.replaceWith(header(current?.nav ?? null))
    }
  } catch {
    // the badge is a convenience; the inbox shows errors
  }
}

function render() {
  const route = parseHash()
  current?.dispose?.()
  current = null
  const wall = isWall(route)
  document.body.classList.toggle('wall', wall)

  if (me === null || route.parts[0] === 'login') {
    if (me !== null) return navigate('#/board')
    const next = route.parts[0] === 'login' ? (route.query.get('next') ?? '#/board') : route.hash
    const view = loginView({ onLoggedIn: (user) => loggedIn(user, next), sessionEnded })
    fill(root, header(null), h('main', { class: 'main main-login' }, view.el))
    current = { ...view, nav: null }
    return undefined
  }

  const { nav, view } = viewFor(route)
  const ctx = { route, me, can, navigate, wall }
  const shown = view(ctx)
  current = { ...shown, nav }
  fill(root, wall ? null : header(nav), h('main', { class: 'main', testid: `view-${nav ?? 'none'}` }, shown.el))
  void refreshFiring()
  return undefined
}

function loggedIn(user, next) {
  me = user
  sessionEnded = false
  navigate(next.startsWith('#/login') ? '#/board' : next)
}

whenUnauthorized(() => {
  if (me === null) return
  me = null
  sessionEnded = true
  const route = parseHash()
  navigate(`#/login?next=${encodeURIComponent(route.hash)}`)
})

window.addEventListener('hashchange', render)
window.addEventListener('resize', () => {
  const wall = isWall(parseHash())
  if (wall !== document.body.classList.contains('wall')) render()
})

async function start() {
  setLang(lang())
  try {
    me = await get('/auth/me')
  } catch {
    me = null
  }
  render()
}

void start()
