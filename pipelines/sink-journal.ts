import { type BatchJournal, type BatchRange } from './bus/bus.ts'
import { type Warehouse } from './warehouse/warehouse.ts'

/**
 * The batch journal kept in ClickHouse itself (table sink_batches), beside
 * the rows it protects: no other store has to be up for the sink to land data.
 */
export class WarehouseBatchJournal implements BatchJournal {
  private readonly wh: Warehouse

  constructor(wh: Warehouse) {
    this.wh = wh
  }

  async planned(r: Omit<BatchRange, 'lastOffset'>): Promise<number | undefined> {
    const rows = await this.wh.query<{ lastOffset: number }>(
      `SELECT argMax(lastOffset, recordedAt) AS lastOffset FROM sink_batches
       WHERE consumerGroup = {group:String} AND scope = {scope:String} AND topic = {topic:String}
         AND partition = {partition:UInt32} AND firstOffset = {first:UInt64}
       HAVING count() > 0`,
      { group: r.group, scope: r.scope, topic: r.topic, partition: r.partition, first: r.firstOffset },
    )
    return rows[0]?.lastOffset
  }

  async record(r: BatchRange): Promise<void> {
    const row = {
      consumerGroup: r.group,
      scope: r.scope,
      topic: r.topic,
      partition: r.partition,
      firstOffset: r.firstOffset,
      lastOffset: r.lastOffset,
      recordedAt: Date.now(),
    }
    await this.wh.insertJsonEachRow('sink_batches', Buffer.from(JSON.stringify(row) + '\n'))
  }
}
