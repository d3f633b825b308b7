import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../lib/clock.ts'
import { openMetadata, type Metadata } from '../lib/metadata/db.ts'
import { type ChannelConfig } from './alerting-config.ts'
import { alertmanagerPayload, closeTransports, type Notification, renderMessage, send } from './channels.ts'
import { DeliveryQueue } from './notifier.ts'
import { SyncHealthStore } from './store.ts'
import { capturingLogger, decodeHeader, type HttpReceiver, httpReceiver, type SmtpReceiver, smtpReceiver } from './test-receivers.ts'

const T0 = Date.parse('2026-11-21T04:00:00Z')
const NOW = Date.parse('2026-11-21T04:01:00Z')

const notification: Notification = {
  receiver: 'hengqin-ops',
  groupKey: '{}/0:{sourceId="hengqin-parking"}',
  groupLabels: { sourceId: 'hengqin-parking' },
  status: 'firing',
  externalUrl: 'http://citysync.example',
  kind: 'notify',
  timezone: 'Asia/Shanghai',
  alerts: [
    {
      id: 7,
      fingerprint: 'a1b2c3d4e5f60718',
      status: 'firing',
      labels: { alertname: 'SourceLate', sourceId: 'hengqin-parking', state: 'LATE', severity: 'critical', operator: '横琴停车公司', district: '横琴' },
      annotations: { summary: 'no new data for 2h1m of expected time (limit 2h)', source: '横琴口岸停车场平台', delay: '2h1m', maxDelay: '2h', incident: '3', lastEventAt: '2026-11-21T02:00:00.000Z' },
      startsAt: T0,
      endsAt: null,
      generatorURL: 'http://citysync.example/api/v1/freshness/hengqin-parking',
    },
    {
      id: 5,
      fingerprint: '0f1e2d3c4b5a6978',
      status: 'resolved',
      labels: { alertname: 'EntityLate', sourceId: 'hengqin-parking', state: 'LATE', severity: 'warning', entityId: 'P003', entityKind: 'car-park', operator: '横琴停车公司', district: '横琴' },
      annotations: { summary: 'no new data for 2h of expected time (limit 2h)', source: '横琴口岸停车场平台', incident: '3' },
      startsAt: T0 - 3_600_000,
      endsAt: T0 - 1_800_000,
      generatorURL: 'http://citysync.example/api/v1/freshness/hengqin-parking',
    },
  ],
}

const MARKDOWN = [
  '### 【告警】横琴口岸停车场平台 1 项异常',
  '',
  '**异常（1）**',
  '- **LATE** 数据延迟 · hengqin-parking · 横琴停车公司 · 横琴',
  '  - no new data for 2h1m of expected time (limit 2h)',
  '  - 开始 2026-11-21 12:00:00',
  '  - 最新数据 2026-11-21 10:00:00',
  '  - 事件 #3',
  '',
  '**已恢复（1）**',
  '- **LATE** 数据延迟 · hengqin-parking / P003 · 横琴停车公司 · 横琴',
  '  - no new data for 2h of expected time (limit 2h)',
  '  - 开始 2026-11-21 11:00:00，恢复 2026-11-21 11:30:00',
  '  - 事件 #3',
  '',
  '请联系数据源负责方核实；处理后在事件台账中记录处置过程与原因。',
  '[查看数据新鲜度](http://citysync.example/api/v1/freshness/hengqin-parking)',
].join('\n')

let http: HttpReceiver
let smtp: SmtpReceiver

beforeAll(async () => {
  http = await httpReceiver()
  smtp = await smtpReceiver()
})
afterAll(async () => {
  closeTransports()
  await http.close()
  await smtp.close()
})

describe('channels deliver to real receivers with the exact wire shape', () => {
  it('renders one markdown message for the group', () => {
    expect(renderMessage(notification).markdown).toBe(MARKDOWN)
    expect(renderMessage(notification).title).toBe('【告警】横琴口岸停车场平台 1 项异常')
  })

  it('posts the Alertmanager v4 webhook payload', async () => {
    http.requests.length = 0
    await send({ type: 'webhook', name: 'am', url: `${http.url}/hook`, headers: { authorization: 'Bearer t0k3n' } }, notification, { timeoutMs: 5_000 })
    expect(http.requests).toHaveLength(1)
    const r = http.requests[0]!
    expect(r.path).toBe('/hook')
    expect(r.headers.authorization).toBe('Bearer t0k3n')
    expect(r.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(r.body).toEqual({
      version: '4',
      groupKey: '{}/0:{sourceId="hengqin-parking"}',
      truncatedAlerts: 0,
      status: 'firing',
      receiver: 'hengqin-ops',
      groupLabels: { sourceId: 'hengqin-parking' },
      commonLabels: { sourceId: 'hengqin-parking', state: 'LATE', operator: '横琴停车公司', district: '横琴' },
      commonAnnotations: { source: '横琴口岸停车场平台', incident: '3' },
      externalURL: 'http://citysync.example',
      alerts: [
        {
          status: 'firing',
          labels: { alertname: 'SourceLate', sourceId: 'hengqin-parking', state: 'LATE', severity: 'critical', operator: '横琴停车公司', district: '横琴' },
          annotations: { summary: 'no new data for 2h1m of expected time (limit 2h)', source: '横琴口岸停车场平台', delay: '2h1m', maxDelay: '2h', incident: '3', lastEventAt: '2026-11-21T02:00:00.000Z' },
          startsAt: '2026-11-21T04:00:00.000Z',
          endsAt: '0001-01-01T00:00:00Z',
          generatorURL: 'http://citysync.example/api/v1/freshness/hengqin-parking',
          fingerprint: 'a1b2c3d4e5f60718',
        },
        {
          status: 'resolved',
          labels: { alertname: 'EntityLate', sourceId: 'hengqin-parking', state: 'LATE', severity: 'warning', entityId: 'P003', entityKind: 'car-park', operator: '横琴停车公司', district: '横琴' },
          annotations: { summary: 'no new data for 2h of expected time (limit 2h)', source: '横琴口岸停车场平台', incident: '3' },
          startsAt: '2026-11-21T03:00:00.000Z',
          endsAt: '2026-11-21T03:30:00.000Z',
          generatorURL: 'http://citysync.example/api/v1/freshness/hengqin-parking',
          fingerprint: '0f1e2d3c4b5a6978',
        },
      ],
    })
    expect(alertmanagerPayload(notification)).toEqual(r.body)
  })

  it('signs DingTalk robot messages in the query: timestamp and base64 HMAC-SHA256 of "timestamp\\nsecret"', async () => {
    http.requests.length = 0
    http.answers.splice(0, http.answers.length, { status: 200, body: { errcode: 0, errmsg: 'ok' } })
    const secret = 'SEC0123456789abcdef'
    await send(
      { type: 'dingtalk', name: 'ding', url: `${http.url}/robot/send?access_token=abc123`, secret, atMobiles: ['13800000000'] },
      notification,
      { timeoutMs: 5_000, now: () => NOW },
    )
    const r = http.requests[0]!
    expect(r.path).toBe('/robot/send')
    const expectedSign = createHmac('sha256', secret).update(`${NOW}\n${secret}`).digest('base64')
    expect(r.query).toEqual({ access_token: 'abc123', timestamp: String(NOW), sign: expectedSign })
    expect(r.body).toEqual({
      msgtype: 'markdown',
      markdown: { title: '【告警】横琴口岸停车场平台 1 项异常', text: MARKDOWN },
      at: { atMobiles: ['13800000000'], isAtAll: false },
    })
  })

  it('posts WeCom robot markdown to the key URL', async () => {
    http.requests.length = 0
    http.answers.splice(0, http.answers.length, { status: 200, body: { errcode: 0, errmsg: 'ok' } })
    await send({ type: 'wecom', name: 'wecom', url: `${http.url}/cgi-bin/webhook/send?key=693a91f6-7xxx` }, notification, { timeoutMs: 5_000 })
    const r = http.requests[0]!
    expect([r.path, r.query]).toEqual(['/cgi-bin/webhook/send', { key: '693a91f6-7xxx' }])
    expect(r.body).toEqual({ msgtype: 'markdown', markdown: { content: MARKDOWN } })
  })

  it('signs Feishu bot messages in the body: HMAC-SHA256 keyed by "timestamp\\nsecret" over nothing', async () => {
    http.requests.length = 0
    http.answers.splice(0, http.answers.length, { status: 200, body: { code: 0, msg: 'success', data: {} } })
    const secret = 'fs-secret-42'
    await send({ type: 'feishu', name: 'feishu', url: `${http.url}/open-apis/bot/v2/hook/xyz`, secret }, notification, { timeoutMs: 5_000, now: () => NOW })
    const r = http.requests[0]!
    const ts = Math.floor(NOW / 1000)
    expect(r.path).toBe('/open-apis/bot/v2/hook/xyz')
    expect(r.body).toEqual({
      timestamp: String(ts),
      sign: createHmac('sha256', `${ts}\n${secret}`).update('').digest('base64'),
      msg_type: 'interactive',
      card: {
        header: { title: { tag: 'plain_text', content: '【告警】横琴口岸停车场平台 1 项异常' }, template: 'orange' },
        elements: [{ tag: 'div', text: { tag: 'lark_md', content: MARKDOWN.split('\n').slice(2).join('\n') } }],
      },
    })
  })

  it('refuses what the platform refuses (DingTalk errcode, Feishu code, HTTP errors)', async () => {
    http.answers.splice(0, http.answers.length, { status: 200, body: { errcode: 310000, errmsg: 'sign not match' } })
    await expect(send({ type: 'dingtalk', name: 'ding', url: `${http.url}/robot/send?access_token=a`, secret: 's' }, notification, { timeoutMs: 5_000 })).rejects.toThrow(
      'channel ding did not accept the notification: errcode 310000: sign not match',
    )
    http.answers.splice(0, http.answers.length, { status: 200, body: { code: 19021, msg: 'sign match fail or timestamp is not within one hour from current time' } })
    await expect(send({ type: 'feishu', name: 'fs', url: `${http.url}/hook`, secret: 's' }, notification, { timeoutMs: 5_000 })).rejects.toThrow('code 19021')
    http.answers.splice(0, http.answers.length, { status: 503, body: { error: 'down' } })
    await expect(send({ type: 'webhook', name: 'am', url: `${http.url}/hook` }, notification, { timeoutMs: 5_000 })).rejects.toThrow('channel am did not accept the notification: HTTP 503')
    http.answers.splice(0, http.answers.length)
  })

  it('sends email over SMTP', async () => {
    await send(
      { type: 'email', name: 'mail', smtp: { host: '127.0.0.1', port: smtp.port }, from: 'citysync <alerts@citysync.example>', to: ['ops@hengqin.example', 'duty@bureau.example'] },
      notification,
      { timeoutMs: 5_000 },
    )
    expect(smtp.mails).toHaveLength(1)
    const mail = smtp.mails[0]!
    expect(mail.from).toBe('alerts@citysync.example')
    expect(mail.to).toEqual(['ops@hengqin.example', 'duty@bureau.example'])
    const subject = /^Subject: (.*(?:\r\n[ \t].*)*)/m.exec(mail.raw)![1]!.replace(/\r\n[ \t]/g, ' ')
    expect(decodeHeader(subject)).toBe('[citysync] 【告警】横琴口岸停车场平台 1 项异常')
    expect(mail.raw).toContain('Content-Type: text/plain; charset=utf-8')
    expect(mail.raw).toContain('Content-Type: text/html; charset=utf-8')
  })
})

describe('delivery queue', () => {
  let dir: string
  let metadata: Metadata
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'citysync-channels-'))
    metadata = await openMetadata({ dataDir: dir })
  })
  afterAll(async () => {
    await metadata.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('retries a failing channel, logs every attempt and records the outcome, without blocking the caller', async () => {
    const store = new SyncHealthStore({ knex: metadata.knex, dialect: metadata.dialect, clock: new ManualClock(NOW) })
    const { log, lines } = capturingLogger()
    const queue = new DeliveryQueue(store, log, { attempts: 3, backoffMs: 20, timeoutMs: 2_000, concurrency: 2 })
    const flaky = await httpReceiver()
    const dead = await httpReceiver()
    try {
      flaky.answers.push({ status: 500, body: {} }, { status: 502, body: {} }, { status: 200, body: {} })
      dead.answers.push({ status: 200, body: { errcode: 310000, errmsg: 'keywords not in content' } })
      const channels: ChannelConfig[] = [
        { type: 'webhook', name: 'ops/webhook', url: `${flaky.url}/hook` },
        { type: 'dingtalk', name: 'ops/dingtalk', url: `${dead.url}/robot/send?access_token=x` },
      ]
      const started = performance.now()
      queue.enqueue({ name: 'ops', channels }, notification)
      expect(performance.now() - started).toBeLessThan(20)
      expect(queue.pending).toBe(2)
      await queue.idle()

      expect(flaky.requests).toHaveLength(3)
      expect(dead.requests).toHaveLength(3)
      const deliveries = await store.deliveries()
      expect(deliveries.map((d) => [d.channel, d.outcome, d.attempts, d.error])).toEqual(
        expect.arrayContaining([
          ['ops/webhook', 'delivered', 3, null],
          ['ops/dingtalk', 'failed', 3, 'channel ops/dingtalk did not accept the notification: errcode 310000: keywords not in content'],
        ]),
      )
      const failed = lines.filter((l) => l.msg === 'alert delivery failed')
      expect(failed.map((l) => [l.channel, l.attempt])).toEqual(
        expect.arrayContaining([
          ['ops/webhook', 1],
          ['ops/webhook', 2],
          ['ops/dingtalk', 1],
          ['ops/dingtalk', 2],
          ['ops/dingtalk', 3],
        ]),
      )
      expect(failed).toHaveLength(5)
      expect(lines.filter((l) => l.msg === 'alert delivered').map((l) => [l.channel, l.attempts])).toEqual([['ops/webhook', 3]])
      expect(lines.filter((l) => l.msg === 'alert delivery gave up').map((l) => l.channel)).toEqual(['ops/dingtalk'])
    } finally {
      await flaky.close()
      await dead.close()
    }
  })
})
