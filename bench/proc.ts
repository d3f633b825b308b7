import { readdirSync, readFileSync } from 'node:fs'

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

/**
 * CPU seconds per thread of a live process, keyed `name` for threads that
 * name themselves (the engine's pools; threads of one name summed) and
 * `node#tid` for Node's own (main thread, workers, V8 helpers), which all
 * share one name. The main thread is `main`. Threads gone by then are missing.
 */
export function threadCpu(pid: number | 'self'): Map<string, number> {
  const out = new Map<string, number>()
  const self = pid === 'self' ? process.pid : pid
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${self}/task`)
  } catch {
    return out
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${self}/task/${tid}/stat`, 'utf8')
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const name = Number(tid) === self ? 'main' : comm === 'node' ? `node#${tid}` : comm.replace(/[\d-]+$/, '') || '?'
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(name, (out.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100)
    } catch {
      // the thread ended meanwhile
    }
  }
  return out
}

/** `after - before` per thread, largest first, as `name 1.2 s` items. */
export function threadCpuDelta(before: Map<string, number>, after: Map<string, number>, min = 0.1): string[] {
  return [...after]
    .map(([name, s]) => [name, s - (before.get(name) ?? 0)] as const)
    .filter(([, s]) => s >= min)
    .sort((a, b) => b[1] - a[1])
    .map(([name, s]) => `${name} ${s.toFixed(1)} s`)
}
