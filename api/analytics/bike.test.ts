import { describe, expect, it } from 'vitest'
import { type AreaCount, balanceAlerts, classifyAreas } from './bike.ts'

const area = (areaId: string, stationVehicles: number, freeVehicles: number, stationsReporting: number): AreaCount => ({
  sourceId: 'nanshan-bike', operatorId: 'nanshan-bikes', area: areaId, lat: 22.5, lon: 113.9, stationVehicles, freeVehicles,
  stations: stationsReporting, stationsReporting, docks: null,
})

describe('bike-share balance', () => {
  const t = { accumulationAt: 30, shortageAt: 2, cellMeters: 500 }

  it('classifies areas against the thresholds', () => {
    const areas = classifyAreas([area('1:1', 20, 10, 1), area('1:2', 1, 1, 1), area('1:3', 0, 0, 0), area('1:4', 3, 0, 1), area('1:5', 0, 29, 0)], t)
    expect(areas.map((a) => [a.area, a.vehicles, a.state])).toEqual([
      ['1:1', 30, 'accumulation'],
      ['1:2', 2, 'shortage'],
      // No reporting station: nothing is expected there, so no shortage.
      ['1:3', 0, 'normal'],
      ['1:4', 3, 'normal'],
      ['1:5', 29, 'normal'],
    ])
  })

  it('raises one alert per area out of balance, with a stable fingerprint', () => {
    const areas = classifyAreas([area('1:1', 20, 10, 1), area('1:2', 1, 1, 1), area('1:4', 3, 0, 1)], t)
    const at = Date.parse('2026-11-21T00:30:00Z')
    const alerts = balanceAlerts(areas, { at, thresholds: t, extraLabels: { district: '南山区' } })
    for (const a of alerts) expect(a.fingerprint).toMatch(/^[0-9a-f]{16}$/)
    expect(alerts.map(({ fingerprint: _, ...rest }) => rest)).toEqual([
      {
        status: 'firing',
        labels: { district: '南山区', alertname: 'BikeAccumulation', sourceId: 'nanshan-bike', operator: 'nanshan-bikes', entityKind: 'area', entityId: '1:1', state: 'ACCUMULATION', severity: 'warning' },
        annotations: { summary: '30 vehicles in area 1:1 (500 m), threshold ≥ 30', vehicles: '30', threshold: '≥ 30', lat: '22.500000', lon: '113.900000' },
        startsAt: at,
        endsAt: null,
      },
      {
        status: 'firing',
        labels: { district: '南山区', alertname: 'BikeShortage', sourceId: 'nanshan-bike', operator: 'nanshan-bikes', entityKind: 'area', entityId: '1:2', state: 'SHORTAGE', severity: 'warning' },
        annotations: { summary: '2 vehicles at 1 station(s) in area 1:2 (500 m), threshold ≤ 2', vehicles: '2', threshold: '≤ 2', lat: '22.500000', lon: '113.900000' },
        startsAt: at,
        endsAt: null,
      },
    ])
    const again = balanceAlerts(areas, { at: at + 60_000, thresholds: t })
    expect(again.map((a) => a.fingerprint)).toEqual(alerts.map((a) => a.fingerprint))
  })
})
