import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ParkingSimulator } from '../connectors/parking-lots/simulator.ts'
import { REPO } from '../infra/test/processes.ts'
import { requireService } from '../infra/test/services.ts'
import { AuthStore } from '../lib/auth/store.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { backends, type Stack, startStack } from './test-stack.ts'

// The operator console end to end, in headless Chromium against a running
// stack: two car-park platforms (simulators read by the real connector every
// second), the sink into chDB, the quality service evaluating freshness every
// second, the API with its security headers and logins. An operator logs in,
// watches a platform go from OK to STALLED (its simulator keeps answering but
// stops producing data), acknowledges the alert, records the incident's root
// cause and downloads the monthly report. Screenshots of every step go to
// test-artifacts/console/.

// What the functions evaluated in the page use (this program has no DOM types).
declare const window: { innerWidth: number }
declare const document: { documentElement: { scrollWidth: number }; body: { classList: { contains(name: string): boolean } } }
declare function getComputedStyle(el: unknown): { borderLeftColor: string; backgroundColor: string; fontSize: string }

const CHROMIUM = '/usr/bin/chromium'
// In CI a missing Chromium fails here (requireService throws); elsewhere the tests are left out, loudly.
const withChromium = requireService('chromium', existsSync(CHROMIUM), 'apt-get install chromium')

const SHOTS = join(REPO, 'test-artifacts', 'console')
const STALLING = 'e2e-hengqin-lots'
const HEALTHY = 'e2e-xiangzhou-lots'
const USER = { username: 'li.gong', password: 'Hengqin-duty-2026!' }
const ROOT_CAUSE = '厂商接口服务卡死，数据不再更新；已重启厂商服务'
const ACK_COMMENT = '已电话联系厂商，正在排查'
const RED = 'rgb(224, 49, 49)'

/** This month in the city's zone, YYYY-MM. */
function monthNow(): string {
  const p = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit' }).formatToParts(new Date()).map((x) => [x.type, x.value]))
  return `${p.year}-${p.month}`
}

interface AlertView {
  id: number
  sourceId: string
  entityId: string | null
  state: string
  status: string
  acknowledged: { by: string; at: string; comment: string | null } | null
  incidentId: number | null
}

describe.runIf(withChromium)('operator console in Chromium', () => {
  let dir: string
  let warehouse: Warehouse
  let stack: Stack
  let browser: Browser
  let context: BrowserContext
  let page: Page
  const simulators: ParkingSimulator[] = []
  /** The stalling platform's clock: frozen, its simulator answers with nothing new. */
  let frozenAt: number | null = null
  const cspViolations: string[] = []
  const pageErrors: string[] = []
  let alert: AlertView

  async function shot(name: string, p: Page = page): Promise<void> {
    await p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true })
  }

  /** The API as the logged-in browser sees it (same session cookie). */
  async function api<T>(path: string): Promise<T> {
    const res = await page.request.get(`${stack.url}/api/v1${path}`)
    expect(res.status(), path).toBe(200)
    return (await res.json()) as T
  }

  function watch(p: Page): void {
    p.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to (execute|load|apply)/i.test(m.text())) cspViolations.push(m.text())
    })
    p.on('pageerror', (err) => pageErrors.push(err.message))
  }

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true })
    dir = mkdtempSync(join(tmpdir(), 'citysync-console-e2e-'))
    warehouse = await openWarehouse({ dataDir: dir })
    const sqlite = (await backends()).find((b) => b.name === 'sqlite')!
    stack = await startStack(sqlite, warehouse, undefined, { quality: { intervalMs: 1000 } })

    const platforms = [
      { id: STALLING, name: '横琴口岸停车场平台', district: '横琴', operator: '横琴停车公司', clock: { now: () => frozenAt ?? Date.now() } },
      { id: HEALTHY, name: '香洲区停车场平台', district: '香洲区', operator: '香洲城投', clock: { now: () => Date.now() } },
    ]
    for (const [i, p] of platforms.entries()) {
      const sim = new ParkingSimulator({ seed: 11 + i, lots: 2, clock: p.clock, eventsPerMinute: 600, spaceIntervalMs: 1000, startAt: Date.now() - 60_000 })
      simulators.push(sim)
      const baseUrl = await sim.start(0)
      await stack.metadata.sources.add(
        { id: p.id, kind: 'parking-lots', name: p.name, operator: p.operator, district: p.district, timezone: 'Asia/Shanghai', schedule: { every: '1s' }, freshness: { maxDelay: '8s' }, config: { baseUrl } },
        'test',
      )
      await stack.metadata.sources.setDesiredState(p.id, 'deployed', 'test')
    }
    await stack.manager.reconcile()

    const auth = new AuthStore({ knex: stack.metadata.knex, dialect: stack.metadata.dialect })
    await auth.createUser({ ...USER, role: 'operator', createdBy: 'test' })

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
    context = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' })
    page = await context.newPage()
    watch(page)
  })

  afterAll(async () => {
    await browser?.close()
    await stack?.close()
    for (const sim of simulators) await sim.stop()
    await warehouse?.close()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('serves the console under a strict CSP and asks for a login', async () => {
    // refresh=1: the board polls every second instead of every 15 s.
    const res = await page.goto(`${stack.url}/#/board?refresh=1`)
    expect(res?.status()).toBe(200)
    const csp = res?.headers()['content-security-policy'] ?? ''
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain("style-src 'self'")
    await page.getByTestId('login-form').waitFor()
    expect(await page.locator('html').getAttribute('lang')).toBe('zh-CN')

    await page.getByTestId('login-username').fill(USER.username)
    await page.getByTestId('login-password').fill('not the password')
    await page.getByTestId('login-submit').click()
    await expect.poll(() => page.getByTestId('login-error').textContent()).toBe('用户名或密码错误')
    await shot('01-login-refused')

    await page.getByTestId('login-password').fill(USER.password)
    await page.getByTestId('login-submit').click()
    await page.getByTestId('board').waitFor()
    expect(await page.getByTestId('user').textContent()).toBe('li.gong（值班员）')
  })

  it('shows the platforms green, then the stalled one red', async () => {
    const tile = page.getByTestId(`tile-${STALLING}`)
    await page.locator(`[data-testid="tile-${STALLING}"][data-state="OK"]`).waitFor({ timeout: 20_000 })
    await page.locator(`[data-testid="tile-${HEALTHY}"][data-state="OK"]`).waitFor({ timeout: 20_000 })
    await page.locator(`[data-testid="entities-${STALLING}"] .chip`).first().waitFor()
    expect(await page.getByTestId(`tile-state-${STALLING}`).textContent()).toBe('正常')
    expect(await page.getByTestId(`tile-age-${STALLING}`).textContent()).toMatch(/^(刚刚|\d+ 秒前)$/)
    await shot('02-board-ok')

    frozenAt = Date.now()
    await page.locator(`[data-testid="tile-${STALLING}"][data-state="STALLED"]`).waitFor({ timeout: 30_000 })
    expect(await tile.getAttribute('class')).toContain('state-STALLED')
    expect(await tile.evaluate((el) => getComputedStyle(el).borderLeftColor)).toBe(RED)
    expect(await page.getByTestId(`tile-state-${STALLING}`).textContent()).toBe('停滞')
    expect(await page.getByTestId(`tile-state-${STALLING}`).evaluate((el) => getComputedStyle(el).backgroundColor)).toBe(RED)
    expect(await page.getByTestId(`tile-age-${STALLING}`).textContent()).toMatch(/^\d+ 秒前$/)
    expect(await page.getByTestId(`tile-${HEALTHY}`).getAttribute('data-state')).toBe('OK')
    await shot('03-board-stalled')

    // Filters: the district narrows the board to the stalled platform.
    await page.getByTestId('filter-district').selectOption('横琴')
    await expect.poll(() => page.locator('[data-testid^="tile-e2e-"]').count()).toBe(1)
    expect(page.url()).toContain('district=')
    await page.getByTestId('filter-district').selectOption('')
  })

  it('acknowledges the alert from the inbox', async () => {
    const sourceAlert = async (): Promise<AlertView | undefined> => (await api<{ items: AlertView[] }>(`/alerts?status=firing&sourceId=${STALLING}`)).items.find((a) => a.entityId === null)
    await expect.poll(sourceAlert, { timeout: 10_000 }).toBeDefined()
    alert = (await sourceAlert())!
    expect(alert).toMatchObject({ state: 'STALLED', acknowledged: null })

    await page.getByTestId('nav-alerts').click()
    await page.getByTestId(`alert-row-${alert.id}`).waitFor()
    await page.getByTestId(`alert-ack-${alert.id}`).click()
    await page.getByTestId('ack-comment').fill(ACK_COMMENT)
    await page.getByTestId('ack-submit').click()
    await expect.poll(() => page.getByTestId(`alert-ack-state-${alert.id}`).textContent()).toContain('li.gong')
    await shot('04-alert-acknowledged')

    const after = (await api<{ items: AlertView[] }>(`/alerts?sourceId=${STALLING}`)).items.find((a) => a.id === alert.id)!
    expect(after.acknowledged).toMatchObject({ by: USER.username, comment: ACK_COMMENT })
  })

  it('writes the root cause into the incident', async () => {
    expect(alert.incidentId).not.toBeNull()
    await page.getByTestId(`alert-incident-${alert.id}`).click()
    await page.getByTestId('incident-root-cause').waitFor()
    await page.getByTestId('incident-root-cause').fill(ROOT_CAUSE)
    await page.getByTestId('incident-root-cause-submit').click()
    await expect.poll(() => page.getByTestId('incident-root-cause-value').textContent()).toBe(ROOT_CAUSE)
    expect(await page.getByTestId('incident-timeline').textContent()).toContain('li.gong')
    await shot('05-incident-root-cause')

    const detail = await api<{ incident: { rootCause: string | null }; timeline: { actor: string; kind: string }[] }>(`/incidents/${alert.incidentId}`)
    expect(detail.incident.rootCause).toBe(ROOT_CAUSE)
    expect(detail.timeline).toEqual(expect.arrayContaining([expect.objectContaining({ actor: USER.username, kind: 'acknowledged' }), expect.objectContaining({ actor: USER.username, kind: 'root_cause' })]))
  })

  it('downloads the monthly report', async () => {
    const month = monthNow()
    await page.getByTestId('nav-reports').click()
    await page.getByTestId('report-month').fill(month)
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.getByTestId('report-sync-html').click()])
    expect(download.suggestedFilename()).toBe(`citysync-sync-${month}.html`)
    const file = join(SHOTS, download.suggestedFilename())
    await download.saveAs(file)
    const html = readFileSync(file, 'utf8')
    expect(html).toContain(month)
    expect(html).toContain('横琴口岸停车场平台')
    await shot('06-reports')
  })

  it('switches to English and remembers it', async () => {
    await page.getByTestId('nav-board').click()
    expect(await page.getByTestId('nav-board').textContent()).toBe('数据源健康')
    await page.getByTestId('lang-toggle').click()
    expect(await page.getByTestId('nav-board').textContent()).toBe('Source health')
    await page.reload()
    await page.getByTestId('board').waitFor()
    expect(await page.getByTestId('nav-board').textContent()).toBe('Source health')
    expect(await page.locator('html').getAttribute('lang')).toBe('en')
    await page.locator(`[data-testid="tile-state-${STALLING}"]`).waitFor()
    expect(await page.getByTestId(`tile-state-${STALLING}`).textContent()).toBe('Stalled')
    await shot('07-board-english')
    await page.getByTestId('lang-toggle').click()
    expect(await page.getByTestId('nav-board').textContent()).toBe('数据源健康')
  })

  it('renders the board on a control-room wall screen without horizontal scrolling', async () => {
    const wall = await context.newPage()
    watch(wall)
    await wall.setViewportSize({ width: 3840, height: 2160 })
    await wall.goto(`${stack.url}/#/board`)
    await wall.locator(`[data-testid="tile-${STALLING}"][data-state="STALLED"]`).waitFor()
    expect(await wall.evaluate(() => document.body.classList.contains('wall'))).toBe(true)
    expect(await wall.getByTestId('topbar').count()).toBe(0)
    const { scrollWidth, innerWidth, fontSize } = await wall.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      fontSize: parseFloat(getComputedStyle(document.body).fontSize),
    }))
    expect(scrollWidth).toBeLessThanOrEqual(innerWidth)
    expect(fontSize).toBeGreaterThanOrEqual(24)
    await shot('08-wall-screen', wall)
    await wall.close()

    // On the laptop, ?wall=1 asks for the same layout.
    await page.goto(`${stack.url}/#/board?wall=1`)
    await page.getByTestId(`tile-${STALLING}`).waitFor()
    expect(await page.evaluate(() => [document.body.classList.contains('wall'), document.documentElement.scrollWidth <= window.innerWidth])).toEqual([true, true])
  })

  it('logs out', async () => {
    await page.goto(`${stack.url}/#/board`)
    await page.getByTestId('logout').click()
    await page.getByTestId('login-form').waitFor()
    expect((await page.request.get(`${stack.url}/api/v1/auth/me`)).status()).toBe(401)
    await shot('09-logged-out')
    expect(cspViolations).toEqual([])
    expect(pageErrors).toEqual([])
  })
})
