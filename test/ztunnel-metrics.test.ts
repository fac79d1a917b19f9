/**
 * ZtunnelMetrics adds a connection's bytes up and hands them to the counters at close or when
 * the metrics are read, not per chunk: a scrape must still see every byte moved so far.
 */
import t from 'tap'
import { ZtunnelMetrics } from '../ztunnel/metrics.js'
import { tcpLabels } from '../ztunnel/context.js'

const labels = tcpLabels({ reporter: 'source', mtls: true })

async function bytes (metrics: ZtunnelMetrics, name: string): Promise<number> {
  const metric = await metrics.registry.getSingleMetric(name)?.get()
  return (metric?.values ?? []).reduce((sum, v) => sum + v.value, 0)
}

t.test('a scrape sees the bytes of a connection still open', async (t) => {
  const metrics = new ZtunnelMetrics('node-a')
  const connection = metrics.connection(labels)
  connection.addBytes(100, 0)
  connection.addBytes(0, 250)
  connection.addBytes(20, 5)
  t.equal(await bytes(metrics, 'istio_tcp_received_bytes_total'), 120)
  t.equal(await bytes(metrics, 'istio_tcp_sent_bytes_total'), 255)
  connection.addBytes(1, 1)
  t.equal(await bytes(metrics, 'istio_tcp_received_bytes_total'), 121, 'bytes after a scrape are counted once, at the next')
  t.equal(await bytes(metrics, 'istio_tcp_sent_bytes_total'), 256)
})

t.test('closing hands over the last bytes, once', async (t) => {
  const metrics = new ZtunnelMetrics('node-a')
  const connection = metrics.connection(labels)
  connection.addBytes(7, 9)
  connection.closed()
  connection.closed()
  t.equal(await bytes(metrics, 'istio_tcp_received_bytes_total'), 7)
  t.equal(await bytes(metrics, 'istio_tcp_sent_bytes_total'), 9)
  t.equal(await bytes(metrics, 'istio_tcp_connections_opened_total'), 1)
  t.equal(await bytes(metrics, 'istio_tcp_connections_closed_total'), 1)
  const text = await metrics.registry.metrics()
  t.match(text, /istio_tcp_received_bytes_total\{[^}]*reporter="source"[^}]*\} 7/)
})
