import { Writable } from 'node:stream'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { maskPlate } from './crypto.ts'
import { hasPlate, jsonErrorText, PLATE_SAFE_LOGGING, scrubPlates } from './plate-redaction.ts'

describe('scrubPlates', () => {
  it('masks plates wherever they sit in free text, as maskPlate does', () => {
    expect(scrubPlates('entry of 粤C12345 at gate E1')).toBe('entry of 粤C·***45 at gate E1')
    expect(scrubPlates('沪AD12345,京A88888;澳MA1234')).toBe('沪A·****45,京A·***88;澳M·***34')
    expect(scrubPlates('Unexpected token \'粤\', "{"plateNo":粤C12345}" is not valid JSON')).toBe(
      'Unexpected token \'粤\', "{"plateNo":粤C·***45}" is not valid JSON',
    )
  })

  it('knows the forms vendors write: separators, lower case, full width, suffixes, JSON escapes', () => {
    for (const [text, masked] of [
      ['粤C·12345', '粤C·***45'],
      ['粤 C-12345', '粤C·***45'],
      ['粤c12345', '粤C·***45'],
      ['粤Ｃ１２３４５', '粤C·***45'],
      ['粤Z1234港', '粤Z·***4港'],
      ['"\\u7ca4C12345"', '"粤C·***45"'],
    ] as const) {
      expect(scrubPlates(text)).toBe(masked)
      expect(hasPlate(scrubPlates(text))).toBe(false)
    }
  })

  it('is idempotent and leaves ordinary text alone', () => {
    const once = scrubPlates('粤C12345 / 沪AD12345')
    expect(scrubPlates(once)).toBe(once)
    for (const text of ['横琴口岸P1停车场', '广东省珠海市横琴粤澳深度合作区港澳大道1号', 'IN20261121000001', 'record 4 (entry seq 5): missing field inTime', maskPlate('粤C12345')]) {
      expect(scrubPlates(text)).toBe(text)
      expect(hasPlate(text)).toBe(false)
    }
  })
})

describe('jsonErrorText', () => {
  it('drops the excerpt of the input V8 quotes, which can hold part of a plate', () => {
    const messages: string[] = []
    for (const text of ['{"a":1,"plateNo":"闽D54321", "b": tru}', '{"records":[{"plateNo":闽D54321}]}', '{"plateNo":"闽D54321" x}']) {
      try {
        JSON.parse(text)
      } catch (err) {
        messages.push(jsonErrorText(err))
      }
    }
    expect(messages.slice(0, 2)).toEqual(["Unexpected token '}' in JSON", "Unexpected token '闽' in JSON"])
    expect(messages[2]).toMatch(/^Expected ',' or '}' after property value in JSON at position \d+/)
    for (const m of messages) expect(m).not.toMatch(/54321|D5432/)
  })
})

describe('PLATE_SAFE_LOGGING', () => {
  it('masks plate fields and scrubs plates out of every line', () => {
    const lines: string[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'))
        done()
      },
    })
    const log = pino({ level: 'info', ...PLATE_SAFE_LOGGING }, sink)
    log.info({ plate: '粤C12345', item: { plateNo: '沪AD12345' }, config: { appKey: 'k-123' } }, 'read')
    log.child({ sourceId: 's1' }).warn({ err: new Error('bad page: {"plateNo":"京A88888"') }, 'page refused for 澳MA1234')
    const text = lines.join('')
    for (const clear of ['粤C12345', '沪AD12345', '京A88888', '澳MA1234', 'k-123']) expect(text).not.toContain(clear)
    expect(text).toContain('粤C·***45')
    expect(text).toContain('沪A·****45')
    expect(text).toContain('京A·***88')
    expect(text).toContain('澳M·***34')
  })
})
