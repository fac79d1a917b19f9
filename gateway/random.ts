/**
 * Where the waypoint's random choices come from: Math.random in production, a seeded generator
 * in tests so that "50% of requests" can be checked exactly and reruns see the same draws.
 */

/** A number in [0, 1), as Math.random returns. */
export type Random = () => number

/** mulberry32: a tiny, fast 32-bit PRNG; the same seed always gives the same sequence. */
export function seededRandom (seed: number): Random {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let mixed = state
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1)
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61)
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296
  }
}

/** An integer in [0, size). */
export function randomIndex (random: Random, size: number): number {
  return Math.min(size - 1, Math.floor(random() * size))
}
