import { readFileSync } from 'node:fs'

export interface ProcStat {
  /** Peak resident set (VmHWM) so far. */
  peakRssMb: number
  /** CPU seconds, user + system, every thread (clock ticks of 1/100 s). */
  cpuS: number
}

/** Peak RSS and CPU seconds of a live process (or this one), from /proc; undefined once it has gone. */
export function procStat(pid: number | 'self'): ProcStat | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { peakRssMb: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024, cpuS: (Number(fields[11]) + Number(fields[12])) / 100 }
  } catch {
    return undefined
  }
}
