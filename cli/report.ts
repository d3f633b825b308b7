import { writeFileSync } from 'node:fs'
import { type Command, Option } from 'commander'
import { systemClock } from '../lib/clock.ts'
import { loadConfig } from '../lib/config.ts'
import { parseDuration } from '../lib/duration.ts'
import { CitysyncError } from '../lib/errors.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { LANGS } from '../quality/report/labels.ts'
import { FORMATS } from '../quality/report/render.ts'
import { checkFormat, checkLang, type RenderedReport, Reports } from '../quality/report/reports.ts'
import { createLogger, loadKeys, openMetadataStore } from './embedded.ts'

// `citysync report sync|onboarding`: the bureau's reports from the shared
// stores, written to a file (or to stdout for json, csv and html).

async function withReports<T>(fn: (reports: Reports) => Promise<T>): Promise<T> {
  const cfg = loadConfig()
  const metadata = await openMetadataStore(cfg, await loadKeys(cfg))
  try {
    const warehouse = await openWarehouse({ clickhouseUrl: cfg.clickhouseUrl, dataDir: cfg.dataDir })
    try {
      return await fn(new Reports({ metadata, warehouse, clock: systemClock, log: createLogger(process.env.LOG_LEVEL ?? 'warn') }))
    } finally {
      await warehouse.close()
    }
  } finally {
    await metadata.close()
  }
}

function output(r: RenderedReport, out: string | undefined, format: string): void {
  if (out === undefined && (format === 'xlsx' || format === 'pdf')) out = r.filename
  if (out === undefined || out === '-') {
    process.stdout.write(r.body)
    return
  }
  writeFileSync(out, r.body)
  process.stderr.write(`citysync: wrote ${out} (${r.body.length} bytes)\n`)
}

const formatOption = (): Option => new Option('--format <format>', 'output format').choices([...FORMATS]).default('json')
const langOption = (): Option => new Option('--lang <lang>', 'labels: Chinese or English').choices([...LANGS]).default('zh')

export function registerReportCommands(program: Command): void {
  const report = program
    .command('report')
    .description("the bureau's reports: the monthly data-sync report and the quarterly county onboarding list")
    .addHelpText(
      'after',
      `
Example:
  $ citysync report sync --month 2026-11 --format xlsx --out 2026-11.xlsx
  $ citysync report sync --month 2026-11 --format pdf --lang en      # needs chromium (apt-get install chromium)
  $ citysync report onboarding --quarter 2026Q4 --format html --out 2026Q4.html`,
    )

  report
    .command('sync')
    .description('the monthly data-synchronisation report (数据同步监控报告): completeness, delays, gaps, incidents per source and car park')
    .requiredOption('--month <YYYY-MM>', 'the month, e.g. 2026-11')
    .addOption(formatOption())
    .option('--out <file>', 'write to this file (default: stdout for json, csv and html; a file named after the report for xlsx and pdf)')
    .addOption(langOption())
    .option('--tz <zone>', 'zone in which the month is read', 'Asia/Shanghai')
    .option('--bucket <duration>', 'completeness bucket, a multiple of 5 minutes (default 5m)')
    .option('--refresh', 'generate it again even when an archived revision is current')
    .addHelpText('after', '\nA finished month is archived in the metadata store when first generated; later calls read the archive\nunless backfilled rows for the month have landed since (then it is generated again).')
    .action(async (o: { month: string; format: string; out?: string; lang: string; tz: string; bucket?: string; refresh?: boolean }) => {
      const format = checkFormat(o.format)
      const lang = checkLang(o.lang)
      let bucketMs: number | undefined
      if (o.bucket !== undefined) {
        try {
          bucketMs = parseDuration(o.bucket)
        } catch {
          throw new CitysyncError('CITYSYNC_ERR_REPORT_OPTION', ['--bucket', `${JSON.stringify(o.bucket)} is not a duration like 5m or 1h`])
        }
      }
      await withReports(async (reports) => {
        const { report: r, archived } = await reports.sync({ month: o.month, zone: o.tz, refresh: o.refresh === true, ...(bucketMs !== undefined ? { bucketMs } : {}) })
        if (archived !== null) process.stderr.write(`citysync: report ${r.month} revision ${archived.revision} (${archived.trigger}, generated ${new Date(archived.generatedAt).toISOString()})\n`)
        output(await reports.renderSync(r, format, lang), o.out, format)
      })
    })

  report
    .command('onboarding')
    .description('the quarterly county onboarding progress list (县市区停车场接入进展清单)')
    .requiredOption('--quarter <YYYYQn>', 'the quarter, e.g. 2026Q4')
    .addOption(formatOption())
    .option('--out <file>', 'write to this file (default: stdout for json, csv and html)')
    .addOption(langOption())
    .option('--tz <zone>', 'zone in which the quarter is read', 'Asia/Shanghai')
    .action(async (o: { quarter: string; format: string; out?: string; lang: string; tz: string }) => {
      const format = checkFormat(o.format)
      const lang = checkLang(o.lang)
      await withReports(async (reports) => {
        output(await reports.renderOnboarding(await reports.onboarding(o.quarter, o.tz), format, lang), o.out, format)
      })
    })
}
