import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../lib/clock.ts'
import { openMetadata, type Metadata } from '../lib/metadata/db.ts'
import { parseAlertingConfig } from './alerting-config.ts'
import { type FreshnessState } from './evaluate.ts'
import { DeliveryQueue, Notifier } from './notifier.ts'
import { alertFingerprint, alertLabels } from './service.ts'
import { type Alert, SyncHealthStore } from './store.ts'
import { type HttpReceiver, httpReceiver } from './test-receivers.ts'

// Routing by district and operator, grouping, group interval, repeats,
// silences, resolved notices and escalation, against real webhook receivers.

const T0 = Date.parse('2026-11-21T04:00:00Z')
const M = 60_000

let dir: string
let metadata: Metadata
let http: HttpReceiver

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-notifier-'))
  metadata = await openMetadata({ dataDir: dir })
  http = await httpReceiver()
})
afterAll(async () => {
  await http.close()
  await metadata.close()
  rmSync(dir, { recursive: true, force: true })
})

type Body = { status: string; groupKey: string; receiver: string; alerts: { status: string; labels: Record<string, string> }[] }

describe('Notifier', () => {
  it('routes by district, groups by source, repeats, honours silences and acknowledgements, sends resolved notices and escalates', async () => {
    const clock = new ManualClock(T0)
    const store = new SyncHealthStore({ knex: metadata.knex, dialect: metadata.dialect, clock })
    const config = parseAlertingConfig({
      externalUrl: 'http://citysync.test',
      receivers: [
        { name: 'hengqin-ops', channels: [{ type: 'webhook', url: `${http.url}/hengqin-ops` }] },
        { name: 'duty', channels: [{ type: 'webhook', url: `${http.url}/duty` }] },
        { name: 'bureau', channels: [{ type: 'webhook', url: `${http.url}/bureau` }] },
      ],
      routes: [
        { match: { district: '横琴' }, receivers: ['hengqin-ops'], groupInterval: '1m', repeatInterval: '4h', escalate: [{ after: '30m', receivers: ['duty'] }] },
        { match: { operator: ['南通停车', '如东停车'] }, receivers: ['bureau'], sendResolved: false },
      ],
    })
    const queue = new DeliveryQueue(store, pino({ level: 'silent' }), config.delivery)
    const notifier = new Notifier(store, config, queue, pino({ level: 'silent' }))
    const open = (sourceId: string, entityId: string | null, state: FreshnessState, operator: string, district: string): Promise<Alert> =>
      store.openAlert({
        fingerprint: alertFingerprint(sourceId, entityId, state),
        sourceId,
        entityId,
        entityKind: entityId === null ? null : 'car-park',
        state,
        operator,
        district,
        labels: alertLabels({ id: sourceId, operator, district }, entityId, entityId === null ? null : 'car-park', state),
        annotations: { summary: `${state}` },
        startsAt: clock.now(),
        incidentId: null,
      })
    const dispatch = async (): Promise<Record<string, Body[]>> => {
      http.requests.length = 0
      await notifier.dispatch(clock.now(), await store.firingAlerts(), new Set())
      await queue.idle()
      const out: Record<string, Body[]> = {}
      for (const r of http.requests) (out[r.path.slice(1)] ??= []).push(r.body as Body)
      return out
    }

    const a1 = await open('hq-lots', null, 'LATE', '横琴停车公司', '横琴')
    const a2 = await open('hq-lots', 'P009', 'SKEWED', '横琴停车公司', '横琴')
    const a3 = await open('nt-lots', null, 'STOPPED', '南通停车', '崇川')
    await open('other', null, 'LATE', '某公司', '别处') // no route matches: recorded, not sent

    let sent = await dispatch()
    expect(Object.keys(sent).sort()).toEqual(['bureau', 'hengqin-ops'])
    expect(sent['hengqin-ops']!.map((b) => [b.groupKey, b.status, b.alerts.map((a) => a.labels.alertname)])).toEqual([
      ['{}/0:{sourceId="hq-lots"}', 'firing', ['SourceLate', 'EntitySkewed']],
    ])
    expect(sent.bureau!.map((b) => [b.groupKey, b.alerts.length])).toEqual([['{}/1:{sourceId="nt-lots"}', 1]])

    // Nothing new: nothing sent. A new alert in the group waits for the group interval.
    clock.advance(30_000)
    expect(await dispatch()).toEqual({})
    const a5 = await open('hq-lots', 'P010', 'LATE', '横琴停车公司', '横琴')
    expect(await dispatch()).toEqual({})
    clock.advance(30_000)
    sent = await dispatch()
    expect(sent['hengqin-ops']!.map((b) => b.alerts.length)).toEqual([3])

    // A silence mutes P009's alert; when it resolves later nobody is told about it.
    await store.createSilence({ matchers: { sourceId: 'hq-lots', entityId: 'P009' }, startsAt: clock.now(), endsAt: clock.now() + 3_600_000, reason: '车场改造', createdBy: '李工' })
    clock.advance(2 * M)
    expect(await dispatch()).toEqual({})
    await store.resolveAlert(a2.id, clock.now(), undefined)
    expect(await dispatch()).toEqual({})

    // a1 is acknowledged: it does not escalate. P010 (firing since 00:30) escalates once, after 30 minutes.
    await store.ackAlert(a1.id, '值班员 李工', null)
    clock.set(T0 + 30 * M)
    expect(await dispatch()).toEqual({})
    clock.set(T0 + 31 * M)
    sent = await dispatch()
    expect(Object.keys(sent)).toEqual(['duty'])
    expect(sent.duty!.map((b) => [b.receiver, b.alerts.map((a) => a.labels.entityId ?? a.labels.sourceId)])).toEqual([['duty', ['P010']]])
    expect((await store.getAlert(a5.id)).escalationLevel).toBe(1)
    clock.advance(M)
    expect(await dispatch()).toEqual({})

    // Resolved: a resolved notice for the Hengqin group; the bureau route does not send them.
    clock.set(T0 + 40 * M)
    await store.resolveAlert(a5.id, clock.now(), undefined)
    await store.resolveAlert(a3.id, clock.now(), undefined)
    sent = await dispatch()
    expect(Object.keys(sent)).toEqual(['hengqin-ops'])
    expect(sent['hengqin-ops']![0]!.status).toBe('firing')
    expect(sent['hengqin-ops']![0]!.alerts.map((a) => [a.labels.alertname, a.status])).toEqual([
      ['SourceLate', 'firing'],
      ['EntityLate', 'resolved'],
    ])

    // Four hours on, a1 still fires but is acknowledged: no reminder. A new alert joins the group and is sent with it;
    // four hours later both are repeated (one is unacknowledged), and the new one escalates.
    clock.set(T0 + 5 * 3_600_000)
    expect(await dispatch()).toEqual({})
    await open('hq-lots', 'P011', 'LATE', '横琴停车公司', '横琴')
    sent = await dispatch()
    expect(sent['hengqin-ops']!.map((b) => b.alerts.length)).toEqual([2])
    clock.set(T0 + 9 * 3_600_000 + M)
    sent = await dispatch()
    expect(sent['hengqin-ops']!.map((b) => [b.status, b.alerts.length])).toEqual([['firing', 2]])
    expect(Object.keys(sent).sort()).toEqual(['duty', 'hengqin-ops'])

    // Everything resolved: the last notice says so.
    for (const a of await store.firingAlerts()) await store.resolveAlert(a.id, clock.now(), undefined)
    clock.advance(M)
    sent = await dispatch()
    expect(sent['hengqin-ops']!.map((b) => [b.status, b.alerts.every((a) => a.status === 'resolved')])).toEqual([['resolved', true]])
    expect((await store.deliveries(100)).every((d) => d.outcome === 'delivered')).toBe(true)
  })
})
