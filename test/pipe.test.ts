/**
 * proxy/pipe.ts on real loopback sockets: bytes and their counts both ways, half-close,
 * backpressure, and failures (a reset, an error) that must destroy both sides.
 */
import t, { type Test } from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { pipeBidirectional, type PipeResult } from '../proxy/pipe.js'

const HOST = '127.0.64.1'

/** Two connected sockets (allowHalfOpen on both), closed by teardown. */
async function socketPair (t: Test): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true })
  server.listen(0, HOST)
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  const accepted = once(server, 'connection') as Promise<[net.Socket]>
  const client = net.connect({ host: HOST, port, allowHalfOpen: true })
  const [serverSide] = await accepted
  await once(client, 'connect').catch(() => {})
  t.teardown(() => {
    client.destroy()
    serverSide.destroy()
    server.close()
  })
  return [client, serverSide]
}

/** The proxy in the middle: outer[1] ⇄ inner[0], so outer[0] talks to inner[1] through it. */
async function proxied (t: Test): Promise<{ left: net.Socket, right: net.Socket, result: Promise<PipeResult>, metered: { aToB: number, bToA: number } }> {
  const [left, a] = await socketPair(t)
  const [b, right] = await socketPair(t)
  const metered = { aToB: 0, bToA: 0 }
  const result = pipeBidirectional(a, b, { aToB: (n) => { metered.aToB += n }, bToA: (n) => { metered.bToA += n } })
  return { left, right, result, metered }
}

async function readAll (socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  await once(socket, 'end')
  return Buffer.concat(chunks)
}

t.test('bytes cross both ways, are counted, and half-close keeps the other direction open', async (t) => {
  const { left, right, result, metered } = await proxied(t)
  const atRight = readAll(right)
  left.end(Buffer.alloc(3000, 1))
  t.equal((await atRight).length, 3000, 'the right side got everything, then end')
  // Left has ended its sending; the answer still flows back to it.
  const atLeft = readAll(left)
  right.end(Buffer.alloc(5000, 2))
  t.equal((await atLeft).length, 5000, 'the answer came back after the half-close')
  const done = await result
  t.equal(done.error, undefined, 'clean in both directions')
  t.same([done.bytesAtoB, done.bytesBtoA], [3000, 5000], 'the result counts each direction')
  t.same(metered, { aToB: 3000, bToA: 5000 }, 'and so did the meter, as bytes moved')
})

t.test('backpressure: a reader that does not read holds the copy back', async (t) => {
  const { left, right, result } = await proxied(t)
  right.pause()
  const chunk = Buffer.alloc(64 * 1024)
  let written = 0
  // Write while the socket drains; stop once it has not drained for half a second. Without
  // backpressure in the proxy, every write would drain and this would never stop.
  let stalled = false
  while (!stalled && written < 256 * 1024 * 1024) {
    written += chunk.length
    if (left.write(chunk)) continue
    stalled = !(await Promise.race([once(left, 'drain').then(() => true), sleep(500).then(() => false)]))
  }
  t.ok(stalled, `the sender stalled while the far side did not read (${written} bytes accepted)`)
  t.ok(written < 64 * 1024 * 1024, 'after a bounded amount')
  const received = readAll(right)
  right.resume()
  left.end()
  t.equal((await received).length, written, 'once it reads, every byte arrives')
  right.end()
  t.equal((await result).error, undefined)
})

t.test('a reset on one side destroys the other and reports the failure', async (t) => {
  const { left, right, result } = await proxied(t)
  left.write('hello')
  await once(right, 'data')
  // allowHalfOpen: the far side sees its connection end (or reset), and would not close on its own.
  const rightEnded = new Promise<void>((resolve) => {
    right.once('end', resolve)
    right.once('error', () => resolve())
  })
  right.resume()
  left.resetAndDestroy()
  const done = await result
  t.ok(done.error !== undefined, `the copy failed (${done.error?.message})`)
  await rightEnded
  t.pass('the proxy closed its connection to the far side too')
})

t.test('a stream destroyed with an error fails the copy with that error and destroys the other', async (t) => {
  const [left, a] = await socketPair(t)
  const [b] = await socketPair(t)
  left.on('error', () => {})
  const result = pipeBidirectional(a, b)
  a.destroy(new Error('boom'))
  const done = await result
  t.equal(done.error?.message, 'boom', 'the first error is the result')
  t.ok(b.destroyed, 'the other stream is destroyed')
})

t.test('a readable that ended before the copy began still ends the other side', async (t) => {
  const [left, a] = await socketPair(t)
  const [b, right] = await socketPair(t)
  left.end()
  a.resume()
  await once(a, 'end')
  a.pause()
  const atRight = readAll(right)
  const result = pipeBidirectional(a, b)
  t.equal((await atRight).length, 0, 'the far side sees end at once')
  right.end('bye')
  const atLeft = await readAll(left)
  t.equal(atLeft.toString(), 'bye', 'and the other direction still works')
  t.equal((await result).error, undefined)
})
