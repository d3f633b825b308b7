// The transport between connectors and stream jobs. Two implementations share
// this interface: an in-process bus (embedded mode) and Apache Kafka.

export interface OutgoingMessage {
  /** Partitioning key: the source id, so one source's events stay in order. */
  key: string
  value: Buffer
  headers: Record<string, string>
}

export interface IncomingMessage {
  offset: number
  /** When the bus accepted the message (epoch ms). */
  timestamp: number
  key: string
  value: Buffer
  headers: Record<string, string>
}

/** Consecutive messages of one topic-partition, delivered together. */
export interface IncomingBatch {
  /**
   * Names the log the offsets belong to. Kafka offsets are durable, so this is
   * empty there; the in-process bus starts again at 0 after a restart and
   * gives each incarnation its own scope, so that offsets (and deduplication
   * tokens built from them) never mean two different batches.
   */
  scope: string
  topic: string
  partition: number
  messages: IncomingMessage[]
  firstOffset: number
  lastOffset: number
}

/**
 * Handles one batch. Resolving commits the batch's offsets; throwing leaves
 * them uncommitted and the same batch is delivered again after a pause.
 */
export type BatchHandler = (batch: IncomingBatch, signal: AbortSignal) => Promise<void>

export interface SubscribeOptions {
  group: string
  topics: readonly string[]
  /** Deliver when this many messages are waiting... */
  maxBatchSize: number
  /** ...or when the oldest waiting message is this old. */
  maxWaitMs: number
  signal: AbortSignal
  /** Called when the handler throws; the batch is retried after a growing pause. */
  onError?: (err: unknown, batch: IncomingBatch, attempt: number) => void
  /**
   * Makes batch boundaries deterministic across restarts and rebalances (Kafka):
   * each batch's range is recorded before its handler runs, and a batch that
   * starts where an unfinished earlier attempt started is cut exactly as that
   * attempt was, so its deduplication tokens are the same.
   */
  journal?: BatchJournal
  /**
   * Called when this member is given partitions (Kafka: after every
   * rebalance); no batch is handled until it resolves. The sink re-warms its
   * duplicate filter here, since what another member landed before the
   * partition moved is not in its memory.
   */
  onAssigned?: () => Promise<void>
  /** After each committed batch: how far behind the end of its partition this member is. */
  onCommitted?: (progress: { topic: string; partition: number; committed: number; lag: number }) => void
}

export interface BatchRange {
  group: string
  scope: string
  topic: string
  partition: number
  firstOffset: number
  lastOffset: number
}

export interface BatchJournal {
  /** The last offset of a batch an earlier attempt began at `firstOffset`, if any. */
  planned(range: Omit<BatchRange, 'lastOffset'>): Promise<number | undefined>
  record(range: BatchRange): Promise<void>
}

export interface Subscription {
  /** Resolves when the subscription has stopped (signal aborted) and in-flight batches finished. */
  done: Promise<void>
}

export interface Bus {
  readonly kind: 'memory' | 'kafka'
  /**
   * Resolves when the messages are safe, so that the connector may move its
   * checkpoint past them: in Kafka, once acknowledged by all in-sync replicas;
   * on the in-process bus, once every subscribed group has committed them
   * (that is, once they have landed in the warehouse).
   */
  publish(topic: string, messages: readonly OutgoingMessage[]): Promise<void>
  subscribe(options: SubscribeOptions, handler: BatchHandler): Subscription
  close(): Promise<void>
}
