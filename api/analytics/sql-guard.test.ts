import { describe, expect, it } from 'vitest'
import { ANALYTICS_DEFAULTS } from './config.ts'
import { astProblems, checkStatementText, isDeniedFunction, limitSettings, queryTreeProblems, wrap } from './sql-guard.ts'

// ClickHouse's EXPLAIN AST of statements wrapped as the endpoint runs them
// (`SELECT * FROM (<statement>) SETTINGS readonly = 1`), recorded from chDB 3.4.
const inner = (body: string): string =>
  'SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 3)\n   ExpressionList (children 1)\n    Asterisk\n' +
  '   TablesInSelectQuery (children 1)\n    TablesInSelectQueryElement (children 1)\n     TableExpression (children 1)\n      Subquery (children 1)\n' +
  body +
  '   Set\n'

const VIEW_SELECT = inner(
  '       SelectWithUnionQuery (children 1)\n        ExpressionList (children 1)\n         SelectQuery (children 3)\n          ExpressionList (children 1)\n' +
    '           Identifier lotId\n          TablesInSelectQuery (children 1)\n           TablesInSelectQueryElement (children 1)\n            TableExpression (children 1)\n' +
    "             TableIdentifier analytics_parking_lot\n          Function equals (children 1)\n           ExpressionList (children 2)\n            Identifier district\n            Literal 'x'\n",
)
const FILE_TABLE = inner(
  '       SelectWithUnionQuery (children 1)\n        ExpressionList (children 1)\n         SelectQuery (children 2)\n          ExpressionList (children 1)\n           Asterisk\n' +
    '          TablesInSelectQuery (children 1)\n           TablesInSelectQueryElement (children 1)\n            TableExpression (children 1)\n             Function file (children 1)\n' +
    "              ExpressionList (children 2)\n               Literal '/etc/passwd'\n               Literal 'LineAsString'\n",
)
const INNER_SETTINGS = inner(
  '       SelectWithUnionQuery (children 1)\n        ExpressionList (children 1)\n         SelectQuery (children 2)\n          ExpressionList (children 1)\n           Literal UInt64_1 (alias a)\n          Set\n',
)

describe('analyst SQL guard', () => {
  it('takes one statement: a trailing ";" goes, any other refuses it', () => {
    expect(checkStatementText('SELECT 1 ;\n ')).toBe('SELECT 1')
    expect(() => checkStatementText('SELECT 1; DROP TABLE parking_lot_day')).toThrow('analyst SQL refused: one statement only')
    expect(() => checkStatementText("SELECT 'a;b'")).toThrow('one statement only')
    expect(() => checkStatementText('-- ;\nSELECT 1')).toThrow('one statement only')
    expect(() => checkStatementText('  ;')).toThrow('analyst SQL refused: the statement is empty')
    expect(() => checkStatementText(42)).toThrow('sql must be a string')
    expect(() => checkStatementText('SELECT ' + 'x'.repeat(100_001))).toThrow('longer than 100000 bytes')
  })

  it('accepts the shape it wraps, and nothing else', () => {
    expect(astProblems(VIEW_SELECT)).toEqual([])
    expect(astProblems(FILE_TABLE)).toEqual(['table function file is not allowed', 'function file is not allowed'])
    expect(astProblems(INNER_SETTINGS)).toEqual(['SETTINGS are not allowed in the statement'])
    expect(astProblems('InsertQuery   (children 1)\n Identifier src\n')).toEqual(['not a single SELECT'])
    // A FORMAT or INTO OUTFILE clause adds a child to the outer query.
    expect(astProblems(VIEW_SELECT.replace('   Set\n', '   Identifier JSON\n   Set\n'))).toContain('the statement must be one query, without FORMAT, INTO OUTFILE or a trailing clause')
  })

  it('allows the analytics views of this database only', () => {
    const tree = (lines: string[]): string => ['QUERY id: 0', '  JOIN TREE', ...lines].join('\n')
    expect(queryTreeProblems(tree(['    TABLE id: 3, alias: __table1, table_name: default.analytics_parking_lot_day']), 'default')).toEqual([])
    expect(queryTreeProblems(tree(['    TABLE id: 3, table_name: system.one']), 'default')).toEqual([])
    expect(queryTreeProblems(tree(['    TABLE id: 3, alias: __table1, table_name: default.parking_passage', '      TABLE id: 8, table_name: system.users']), 'default')).toEqual([
      expect.stringMatching(/^table default\.parking_passage is not one of the analytics views \(analytics_parking_lot, /),
      expect.stringMatching(/^table system\.users is not one of the analytics views/),
    ])
    expect(queryTreeProblems(tree(['    TABLE id: 3, table_name: other.analytics_parking_lot_day']), 'default')).toHaveLength(1)
    expect(queryTreeProblems(tree(['    TABLE_FUNCTION id: 3, alias: __table1, table_function_name: numbers']), 'default')).toEqual(['table function numbers is not allowed'])
    expect(queryTreeProblems(tree(['      FUNCTION id: 4, function_name: joinGet, function_type: ordinary, result_type: String']), 'default')).toEqual(['function joinGet is not allowed'])
  })

  it('knows the functions that reach outside the data', () => {
    for (const f of ['file', 'dictGet', 'dictGetString', 'dictHas', 'joinGet', 'joinGetOrNull', 'sleep', 'getServerSetting', 'hasColumnInTable', '__getScalar', 'url']) expect(isDeniedFunction(f), f).toBe(true)
    for (const f of ['sum', 'toStartOfHour', 'argMax', 'round', 'formatDateTime', 'dateDiff']) expect(isDeniedFunction(f), f).toBe(false)
  })

  it('runs the statement inside a query whose only settings are the limits', () => {
    expect(wrap('SELECT 1', limitSettings(ANALYTICS_DEFAULTS.sql))).toBe(
      "SELECT * FROM (\nSELECT 1\n) SETTINGS readonly = 1, max_execution_time = 30, max_result_rows = 100000, result_overflow_mode = 'throw', max_memory_usage = 2147483648",
    )
  })
})
