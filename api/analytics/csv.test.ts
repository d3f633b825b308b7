import { describe, expect, it } from 'vitest'
import { toCsv, wantsCsv } from './csv.ts'

describe('CSV answers', () => {
  it('writes RFC 4180 rows', () => {
    expect(toCsv(['a', 'b', 'c'], [{ a: 1, b: 'x,y', c: null }, { a: 0.5, b: 'say "hi"', c: [1, 2] }, { a: true, b: ' padded', c: '第一\n第二' }])).toBe(
      'a,b,c\r\n1,"x,y",\r\n0.5,"say ""hi""","[1,2]"\r\ntrue," padded","第一\n第二"\r\n',
    )
    expect(toCsv(['a'], [])).toBe('a\r\n')
  })

  it('answers CSV when asked for it', () => {
    expect(wantsCsv('csv', 'application/json')).toBe(true)
    expect(wantsCsv('json', 'text/csv')).toBe(false)
    expect(wantsCsv(undefined, 'text/csv')).toBe(true)
    expect(wantsCsv(undefined, 'text/csv;q=0.9, application/json')).toBe(true)
    expect(wantsCsv(undefined, 'application/json, text/csv')).toBe(false)
    expect(wantsCsv(undefined, '*/*')).toBe(false)
    expect(wantsCsv(undefined, undefined)).toBe(false)
  })
})
