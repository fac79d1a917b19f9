import t from 'tap'
import { EndpointPicker } from '../ztunnel/endpoints.js'
import type { ServiceState } from '../policy/state.js'

const service: ServiceState = {
  key: 'ns/svc', name: 'svc', namespace: 'ns', hostnames: [], policies: [], routes: [],
  ports: [{ port: 80, targetPort: 8080, appProtocol: 'http' }],
  endpoints: ['10.0.0.1', '10.0.0.2', '10.0.0.3'].map((ip) => ({ workload: `ns/${ip}`, meshed: true, ip, node: 'n', ports: { 80: 8080 } }))
}

t.test('round robin over the endpoints serving the port', async (t) => {
  const picker = new EndpointPicker()
  const picks = Array.from({ length: 6 }, () => picker.pick(service, 80)?.ip)
  t.same(picks, ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.2', '10.0.0.3'])
  t.equal(picker.pick(service, 81), undefined, 'no endpoint serves port 81')
})

t.test('a failed endpoint sits out its cooldown, then comes back', async (t) => {
  let now = 1000
  const picker = new EndpointPicker(5000, () => now)
  picker.markFailed('10.0.0.2')
  const picks = new Set(Array.from({ length: 10 }, () => picker.pick(service, 80)?.ip))
  t.notOk(picks.has('10.0.0.2'))
  now += 5001
  const later = new Set(Array.from({ length: 10 }, () => picker.pick(service, 80)?.ip))
  t.ok(later.has('10.0.0.2'))
})

t.test('when every endpoint failed, all are tried again', async (t) => {
  const picker = new EndpointPicker()
  for (const e of service.endpoints) picker.markFailed(e.ip)
  t.ok(picker.pick(service, 80) !== undefined)
  picker.markHealthy('10.0.0.3')
  t.equal(picker.pick(service, 80)?.ip, '10.0.0.3', 'healthy first')
})
