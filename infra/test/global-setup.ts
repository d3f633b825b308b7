import { IN_CI, POSTGRES_URL, postgresReachable } from './services.ts'

// Integration tests find their services here. In CI every service must be
// there (.ci/run starts them); elsewhere missing ones are reported once, and
// the tests that need them skip with the reason.
export default async function setup(): Promise<void> {
  const pg = await postgresReachable()
  if (!pg) {
    const msg = `PostgreSQL not reachable at ${POSTGRES_URL}`
    if (IN_CI) throw new Error(`${msg}; .ci/run should have started it`)
    console.warn(`\n*** ${msg}: PostgreSQL integration tests will skip ***\n`)
  }
}
