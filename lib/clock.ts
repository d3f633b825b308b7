// Code that needs the current time takes a Clock, so tests can move time.
export interface Clock {
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

export class ManualClock implements Clock {
  private t: number
  constructor(start: number | string) {
    this.t = typeof start === 'number' ? start : Date.parse(start)
  }
  now(): number {
    return this.t
  }
  set(t: number | string): void {
    this.t = typeof t === 'number' ? t : Date.parse(t)
  }
  advance(ms: number): void {
    this.t += ms
  }
}
