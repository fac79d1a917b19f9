import t from 'tap'
import { Readable } from 'node:stream'
import { ReplayableBody, replayable } from '../gateway/replay-body.js'

async function drain (stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

t.test('passes the body through, counts it, and keeps it for a retry once it has ended', async (t) => {
  let counted = 0
  const body = replayable(Readable.from([Buffer.from('hello '), Buffer.from('world')]), (n) => { counted += n })
  t.equal(body.replay(), undefined, 'nothing to replay while the body is still arriving')
  t.equal((await drain(body)).toString(), 'hello world', 'the bytes pass unchanged')
  t.equal(counted, 11, 'every byte counted once')
  t.equal(body.replay()?.toString(), 'hello world', 'the whole body, for another try')
  t.equal(body.replay()?.toString(), 'hello world', 'as often as there are retries')
})

t.test('a body over the limit still passes, but is not kept', async (t) => {
  const body = new ReplayableBody(() => {}, 8)
  Readable.from([Buffer.from('12345'), Buffer.from('67890')]).pipe(body)
  t.equal((await drain(body)).toString(), '1234567890')
  t.equal(body.replay(), undefined, 'too large to replay: such a request is not retried')
})

t.test('an error on the source ends the body with it', async (t) => {
  const source = new Readable({ read () {} })
  const body = replayable(source, () => {})
  source.destroy(new Error('client went away'))
  await t.rejects(drain(body), /client went away/)
  t.equal(body.replay(), undefined)
})
