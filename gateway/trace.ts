/**
 * W3C trace context: every hop keeps the trace id and gets a new span id (its parent being the
 * incoming span), so a trace shows the waypoint as its own hop. `baggage` passes through as is.
 */
import { randomFillSync } from 'node:crypto'

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

export interface TraceContext {
  readonly traceId: string
  readonly spanId: string
  /** The incoming span, if the request carried one. */
  readonly parentSpanId?: string
  readonly flags: string
}

/**
 * Ids come from a pool of random bytes refilled 64 KiB at a time: one call into OpenSSL every
 * ~2,700 requests instead of two per request (randomBytes was 7% of the waypoint's busy time;
 * a 4 KiB pool still showed its refills in the profile). Every byte is still used once.
 */
const POOL_BYTES = 64 * 1024
const pool = Buffer.alloc(POOL_BYTES)
let poolUsed = POOL_BYTES

function randomHex (bytes: number): string {
  if (poolUsed + bytes > POOL_BYTES) {
    randomFillSync(pool)
    poolUsed = 0
  }
  const hex = pool.toString('hex', poolUsed, poolUsed + bytes)
  poolUsed += bytes
  return hex
}

/** The context of this hop: continues a valid incoming traceparent, else starts a trace. */
export function nextHop (incoming: string | undefined): TraceContext {
  const match = incoming === undefined ? null : TRACEPARENT.exec(incoming.trim().toLowerCase())
  const spanId = randomHex(8)
  if (match === null || match[1] === 'ff' || match[2] === ZERO_TRACE || match[3] === ZERO_SPAN) {
    return { traceId: randomHex(16), spanId, flags: '01' }
  }
  return { traceId: match[2]!, spanId, parentSpanId: match[3]!, flags: match[4]! }
}

export function formatTraceparent (context: TraceContext): string {
  return `00-${context.traceId}-${context.spanId}-${context.flags}`
}
