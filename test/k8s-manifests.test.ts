/**
 * The manifests of k8s/, checked against the Kubernetes schemas and against the code they run:
 * the CLI's flags, the ztunnel's ports and the controller's API calls (CONTROLLER_API_ACCESS).
 * Nothing here needs a cluster.
 */
import t, { type Test } from 'tap'
import { readFile } from 'node:fs/promises'
import { basename, dirname, join, relative } from 'node:path'
import { parse } from 'yaml'
import { REPO_ROOT } from './helpers/mesh.js'
import type { KubernetesObject } from './helpers/k8s-models.js'
import {
  GATEWAY, IMAGE, K8S_DIR, KUSTOMIZATION, TEMPLATE_FILE, TEMPLATE_VALUES, find, installedObjects, isClusterScoped,
  loadObjects, objectProblems, parseObjects, renderedTemplate, sortedUnique, yamlFiles
} from './helpers/k8s-manifests.js'
import { listFlag, parseCommandArgs, stringFlag, type Command } from '../cli/command.js'
import { ztunnelCommand } from '../cli/commands/ztunnel.js'
import { waypointCommand } from '../cli/commands/waypoint.js'
import { controllerCommand } from '../cli/commands/controller.js'
import { DEFAULT_ZTUNNEL_PORTS } from '../ztunnel/ztunnel.js'
import {
  AMBIT_NAMESPACE, CA_ROOT_SECRET, CA_TOKEN_AUDIENCE, CONTROLLER_API_ACCESS, CONTROLLER_SERVICE_ACCOUNT,
  WAYPOINT_CLI_API_ACCESS, WAYPOINT_TEMPLATE, ZTUNNEL_SERVICE_ACCOUNT, type ApiAccess
} from '../control/kubernetes-access.js'
import { AMBIENT_LABEL, AMBIENT_VALUE, WAYPOINT_CLASS } from '../policy/resources.js'
import { GATEWAY_NAME_LABEL } from '../policy/resolve.js'

// ---- Pod templates ----

interface EnvVar {
  name: string
  value?: string
  valueFrom?: { fieldRef?: { fieldPath: string }, configMapKeyRef?: { name: string, key: string } }
}
interface Container {
  name: string
  image: string
  args?: string[]
  env?: EnvVar[]
  ports?: Array<{ name?: string, containerPort: number }>
  readinessProbe?: { httpGet?: { path: string, port: number | string }, tcpSocket?: { port: number | string } }
  securityContext?: { runAsUser?: number, capabilities?: { add?: string[], drop?: string[] } }
  volumeMounts?: Array<{ name: string, mountPath: string }>
}
interface Volume {
  name: string
  projected?: { sources: Array<{ serviceAccountToken?: { audience?: string, path: string } }> }
}
interface PodSpec {
  serviceAccountName?: string
  automountServiceAccountToken?: boolean
  hostNetwork?: boolean
  dnsPolicy?: string
  tolerations?: Array<{ key?: string, operator?: string, effect?: string }>
  containers: Container[]
  volumes?: Volume[]
}
interface PodTemplate {
  metadata: { labels?: Record<string, string>, annotations?: Record<string, string> }
  spec: PodSpec
}
interface ServiceSpec {
  selector?: Record<string, string>
  ports: Array<{ name?: string, port: number, targetPort?: number | string }>
}

function podTemplate (workload: KubernetesObject): PodTemplate {
  return (workload.spec as { template: PodTemplate }).template
}

function container (workload: KubernetesObject, name: string): Container {
  const found = podTemplate(workload).spec.containers.find((c) => c.name === name)
  if (found === undefined) throw new Error(`${workload.kind} ${workload.metadata.name} has no container ${name}`)
  return found
}

function env (c: Container, name: string): EnvVar | undefined {
  return c.env?.find((e) => e.name === name)
}

/** Parses a container's args with the command's own parser (unknown flags throw), after checking the subcommand. */
function commandArgs (t: Test, c: Container, command: Command): ReturnType<typeof parseCommandArgs> {
  const words = command.name.split(' ')
  t.strictSame(c.args?.slice(0, words.length), words, `the container runs \`ambit ${command.name}\``)
  const parsed = parseCommandArgs(command, (c.args ?? []).slice(words.length))
  // Kubernetes passes an unknown $(VAR) through as it is, so a typo would reach the flag.
  for (const reference of (c.args ?? []).join(' ').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
    t.ok(env(c, reference[1]!), `$(${reference[1]}) is an env var of the container`)
  }
  return parsed
}

function requireFlags (t: Test, parsed: ReturnType<typeof parseCommandArgs>, flags: readonly string[]): void {
  for (const flag of flags) t.ok(stringFlag(parsed, flag), `--${flag} is given`)
}

/** --store comes from the ambit-config ConfigMap, whose storeUrl names the bundled Redis Service. */
function checkStoreFromConfig (t: Test, parsed: ReturnType<typeof parseCommandArgs>, c: Container, installed: readonly KubernetesObject[]): void {
  const match = /^\$\((\w+)\)$/.exec(stringFlag(parsed, 'store') ?? '')
  t.ok(match, '--store is read from an env var')
  const ref = env(c, match?.[1] ?? '')?.valueFrom?.configMapKeyRef
  t.strictSame(ref, { name: 'ambit-config', key: 'storeUrl' }, 'that env var is ambit-config\'s storeUrl')
  const config = find(installed, 'ConfigMap', 'ambit-config') as KubernetesObject & { data: Record<string, string> }
  const redis = find(installed, 'Service', 'ambit-redis')
  const redisPort = (redis.spec as ServiceSpec).ports[0]!.port
  t.equal(config.data.storeUrl, `redis://ambit-redis.${AMBIT_NAMESPACE}.svc:${redisPort}`, 'storeUrl names the bundled Redis Service')
}

/** --ca is the controller Service's CA port. */
function checkCaUrl (t: Test, parsed: ReturnType<typeof parseCommandArgs>, installed: readonly KubernetesObject[]): void {
  const service = find(installed, 'Service', 'ambit-controller')
  const caPort = (service.spec as ServiceSpec).ports.find((p) => p.name === 'https-ca')?.port
  t.equal(stringFlag(parsed, 'ca'), `https://ambit-controller.${AMBIT_NAMESPACE}.svc:${caPort}`, '--ca is the controller Service\'s CA port')
}

/** --token-file is a projected ServiceAccount token for the CA's audience. */
function checkCaToken (t: Test, parsed: ReturnType<typeof parseCommandArgs>, c: Container, pod: PodSpec): void {
  const file = stringFlag(parsed, 'token-file') ?? ''
  const mount = c.volumeMounts?.find((m) => m.mountPath === dirname(file))
  t.ok(mount, `--token-file ${file} lies in a mounted volume`)
  const volume = pod.volumes?.find((v) => v.name === mount?.name)
  const token = volume?.projected?.sources.find((s) => s.serviceAccountToken !== undefined)?.serviceAccountToken
  t.equal(token?.audience, CA_TOKEN_AUDIENCE, 'it is a projected ServiceAccount token for the CA')
  t.equal(token?.path, basename(file), 'at the path --token-file names')
}

function checkReadiness (t: Test, c: Container): void {
  t.strictSame(c.readinessProbe?.httpGet, { path: '/healthz/ready', port: DEFAULT_ZTUNNEL_PORTS.readiness }, 'readiness is /healthz/ready on 15021')
}

function checkScrapeAnnotations (t: Test, template: PodTemplate, c: Container): void {
  t.strictSame(template.metadata.annotations, {
    'prometheus.io/scrape': 'true',
    'prometheus.io/port': String(DEFAULT_ZTUNNEL_PORTS.metrics),
    'prometheus.io/path': '/metrics'
  }, 'Prometheus scrapes /metrics on 15020')
  t.ok(c.ports?.some((p) => p.containerPort === DEFAULT_ZTUNNEL_PORTS.metrics && p.name === 'http-metrics'), '15020 is the http-metrics port')
}

/** A Service selects the pods of `workload` and targets ports its containers have. */
function checkServiceTargets (t: Test, service: KubernetesObject, workload: KubernetesObject): void {
  const spec = service.spec as ServiceSpec
  const template = podTemplate(workload)
  for (const [key, value] of Object.entries(spec.selector ?? {})) t.equal(template.metadata.labels?.[key], value, `Service ${service.metadata.name} selects ${key}=${value}`)
  t.ok(Object.keys(spec.selector ?? {}).length > 0, `Service ${service.metadata.name} has a selector`)
  const ports = template.spec.containers.flatMap((c) => c.ports ?? [])
  for (const port of spec.ports) {
    const target = port.targetPort ?? port.port
    t.ok(ports.some((p) => p.name === target || p.containerPort === target), `Service ${service.metadata.name} port ${port.port} targets a container port (${target})`)
  }
}

// ---- RBAC ----

interface PolicyRule { apiGroups?: string[], resources?: string[], verbs: string[], resourceNames?: string[] }

/** One grant per (scope, group, resource, verb, name): the form rules and CONTROLLER_API_ACCESS are compared in. */
function grantsOfRules (rules: readonly PolicyRule[], scope: string): string[] {
  return rules.flatMap((rule) => (rule.apiGroups ?? []).flatMap((group) => (rule.resources ?? []).flatMap((resource) =>
    rule.verbs.flatMap((verb) => (rule.resourceNames ?? ['*any*']).map((name) => `${scope}|${group}|${resource}|${verb}|${name}`)))))
}

function grantsOfAccess (access: readonly ApiAccess[]): string[] {
  return access.flatMap((a) => a.verbs.flatMap((verb) => (a.resourceNames ?? ['*any*'])
    .map((name) => `${a.namespace ?? 'cluster'}|${a.apiGroup}|${a.resource}|${verb}|${name}`)))
}

/** The rules of every Role and ClusterRole bound to the ServiceAccount. */
function grantsOfServiceAccount (objects: readonly KubernetesObject[], namespace: string, name: string): string[] {
  const bindings = objects.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding') as Array<KubernetesObject & {
    roleRef: { kind: string, name: string }, subjects: Array<{ kind: string, name: string, namespace?: string }>
  }>
  return bindings
    .filter((b) => b.subjects.some((s) => s.kind === 'ServiceAccount' && s.name === name && s.namespace === namespace))
    .flatMap((binding) => {
      const role = find(objects, binding.roleRef.kind, binding.roleRef.name) as KubernetesObject & { rules: PolicyRule[] }
      // A ClusterRole bound by a RoleBinding grants only in the binding's namespace.
      const scope = binding.kind === 'ClusterRoleBinding' ? 'cluster' : binding.metadata.namespace ?? ''
      return grantsOfRules(role.rules, scope)
    })
}

// ---- The tests ----

t.test('every manifest parses, names a real apiVersion and kind, and passes its schema', async (t) => {
  const files = await yamlFiles(K8S_DIR)
  t.ok(files.length >= 10, 'the manifests are found')
  for (const file of files) {
    const source = relative(REPO_ROOT, file)
    const text = file === TEMPLATE_FILE ? await renderedTemplate() : await readFile(file, 'utf8')
    const objects = parseObjects(text, source)
    t.ok(objects.length > 0, `${source} holds objects`)
    if (basename(file) === KUSTOMIZATION) continue // checked on its own below
    for (const object of objects) {
      t.strictSame(await objectProblems(object), [], `${source}: ${object.kind} ${object.metadata?.name}`)
    }
  }
})

t.test('the schema checks refuse what the API server refuses', async (t) => {
  const deployment = (container: object): KubernetesObject => ({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x', namespace: AMBIT_NAMESPACE },
    spec: { selector: { matchLabels: { app: 'x' } }, template: { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'x', image: IMAGE, ...container }] } } }
  })
  t.strictSame(await objectProblems(deployment({})), [], 'a good Deployment passes')
  t.match(await objectProblems(deployment({ ports: [{ containerPort: 'http' }] })), [/containerPort must be integer/], 'a wrong type')
  t.match(await objectProblems(deployment({ readinesProbe: {} })), [/readinesProbe: unknown field/], 'a misspelt field')
  t.match(await objectProblems(deployment({ ports: [{ name: 'much-too-long-port-name', containerPort: 1 }] })), [/not an IANA service name/], 'a bad port name')
  t.match(await objectProblems({ ...deployment({}), metadata: { name: 'Bad_Name' } }), [/metadata.name/], 'a bad name')
  t.match(await objectProblems({ apiVersion: 'apps/v1beta9', kind: 'Deployment', metadata: { name: 'x' } }), [/not a kind these tests know/], 'an unknown apiVersion')
  t.match(await objectProblems({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'x' }, spec: { controllerName: 'no-slash' } }),
    [/controllerName.*does not match/], 'a custom kind against its CRD schema')
  t.match(await objectProblems({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'x' }, rules: [{ resources: ['pods'] }] }),
    [/verbs/], 'an RBAC rule without verbs')
})

t.test('namespaced objects live in ambit-system; the rest are cluster-scoped', async (t) => {
  const objects = [...await installedObjects(), ...await loadObjects(join(K8S_DIR, 'extras/podmonitor.yaml'))]
  for (const object of objects) {
    const expected = await isClusterScoped(object) ? undefined : AMBIT_NAMESPACE
    t.equal(object.metadata.namespace, expected, `${object.kind} ${object.metadata.name}`)
  }
  t.ok(objects.some((o) => o.kind === 'Namespace' && o.metadata.name === AMBIT_NAMESPACE), 'the namespace itself is installed')
})

t.test('the kustomization lists every manifest of k8s/ but the template and extras/', async (t) => {
  const kustomization = parse(await readFile(join(K8S_DIR, KUSTOMIZATION), 'utf8')) as Record<string, unknown> & { resources: string[], images?: Array<{ name: string }> }
  t.equal(kustomization.apiVersion, 'kustomize.config.k8s.io/v1beta1')
  t.equal(kustomization.kind, 'Kustomization')
  t.strictSame(Object.keys(kustomization).filter((k) => !['apiVersion', 'kind', 'resources', 'images'].includes(k)), [], 'no other kustomize feature is relied on')
  const expected = (await yamlFiles(K8S_DIR))
    .map((file) => relative(K8S_DIR, file))
    .filter((file) => file !== KUSTOMIZATION && !file.startsWith('extras/') && join(K8S_DIR, file) !== TEMPLATE_FILE)
  t.strictSame([...kustomization.resources].sort(), expected, 'resources are exactly the manifests')
  t.equal(new Set(kustomization.resources).size, kustomization.resources.length, 'no file is listed twice')
  t.strictSame(kustomization.images?.map((i) => i.name), [IMAGE.split(':')[0]], 'the image can be renamed with kustomize edit set image')
})

t.test('RBAC grants the controller exactly CONTROLLER_API_ACCESS', async (t) => {
  const objects = await installedObjects()
  const granted = sortedUnique(grantsOfServiceAccount(objects, AMBIT_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT))
  const wanted = sortedUnique(grantsOfAccess(CONTROLLER_API_ACCESS))
  t.strictSame(granted.filter((g) => !wanted.includes(g)), [], 'nothing is granted that the controller does not call')
  t.strictSame(wanted.filter((g) => !granted.includes(g)), [], 'everything the controller calls is granted')
  t.ok(wanted.includes(`${CA_ROOT_SECRET.namespace}||secrets|get|${CA_ROOT_SECRET.name}`), 'the controller reads the CA root Secret, by name')
  t.notOk(CONTROLLER_API_ACCESS.some((a) => a.resource === 'namespaces' && a.verbs.includes('patch')), 'labelling namespaces is the CLI user\'s right, not the controller\'s')
  t.notOk(CONTROLLER_API_ACCESS.some((a) => a.resourceNames !== undefined && a.verbs.includes('create')), 'no create is limited by name (RBAC cannot)')
})

t.test('no RBAC rule uses a wildcard', async (t) => {
  const roles = (await Promise.all((await yamlFiles(K8S_DIR)).map(loadObjects))).flat()
    .filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role') as Array<KubernetesObject & { rules: PolicyRule[] }>
  t.ok(roles.length >= 3)
  for (const role of roles) {
    for (const rule of role.rules) {
      const values = [...rule.apiGroups ?? [], ...rule.resources ?? [], ...rule.verbs, ...rule.resourceNames ?? []]
      t.notOk(values.some((v) => v.includes('*')), `${role.kind} ${role.metadata.name}: ${JSON.stringify(rule)}`)
    }
  }
})

t.test('the waypoint admin role grants exactly what `ambit waypoint apply/delete` needs', async (t) => {
  const [role] = await loadObjects(join(K8S_DIR, 'extras/waypoint-admin-role.yaml')) as Array<KubernetesObject & { rules: PolicyRule[] }>
  t.equal(role?.kind, 'ClusterRole')
  t.strictSame(sortedUnique(grantsOfRules(role?.rules ?? [], 'cluster')), sortedUnique(grantsOfAccess(WAYPOINT_CLI_API_ACCESS)))
})

t.test('the ztunnel DaemonSet runs `ambit ztunnel` as it needs', async (t) => {
  const installed = await installedObjects()
  const daemonSet = find(installed, 'DaemonSet', 'ambit-ztunnel')
  const template = podTemplate(daemonSet)
  const pod = template.spec
  const c = container(daemonSet, 'ztunnel')
  t.equal(c.image, IMAGE)

  const parsed = commandArgs(t, c, ztunnelCommand)
  requireFlags(t, parsed, ['node', 'store', 'ca', 'token-file'])
  t.equal(stringFlag(parsed, 'node'), '$(NODE_NAME)', '--node is the node the pod runs on...')
  t.strictSame(env(c, 'NODE_NAME')?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } }, '...from the downward API')
  t.equal(parsed.flags['no-capture'], undefined, 'capture is on')
  checkStoreFromConfig(t, parsed, c, installed)
  checkCaUrl(t, parsed, installed)
  checkCaToken(t, parsed, c, pod)

  const { admin, ...served } = DEFAULT_ZTUNNEL_PORTS
  t.strictSame(c.ports?.map((p) => p.containerPort).sort(), Object.values(served).sort(), 'every listener but the loopback admin port is a containerPort')
  t.notOk(c.ports?.some((p) => p.containerPort === admin), `the admin port ${admin} stays on loopback`)
  t.strictSame(Object.fromEntries(c.ports?.map((p) => [p.containerPort, p.name]) ?? []), {
    [served.outbound]: 'outbound', [served.inboundPlaintext]: 'inbound-plain', [served.hbone]: 'hbone',
    [served.socks5]: 'socks5', [served.metrics]: 'http-metrics', [served.readiness]: 'health'
  }, 'the ports are named for what they serve')
  checkReadiness(t, c)
  checkScrapeAnnotations(t, template, c)

  t.equal(pod.hostNetwork, true, 'it runs in the node\'s network namespace')
  t.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet', 'and still resolves Service names')
  t.ok(c.securityContext?.capabilities?.add?.includes('NET_ADMIN'), 'NET_ADMIN, for iptables and SO_MARK')
  t.ok(c.securityContext?.capabilities?.add?.includes('NET_RAW'), 'NET_RAW, for iptables')
  t.strictSame(c.securityContext?.capabilities?.drop, ['ALL'], 'nothing else')
  t.equal(c.securityContext?.runAsUser, 0, 'root, since added capabilities only apply to uid 0')
  t.ok(pod.tolerations?.some((tol) => tol.operator === 'Exists' && tol.key === undefined && tol.effect === undefined), 'it tolerates every taint, so runs on every node')
  t.equal(pod.serviceAccountName, ZTUNNEL_SERVICE_ACCOUNT)
  t.equal(pod.automountServiceAccountToken, false, 'it holds no API token')
  t.equal(find(installed, 'ServiceAccount', ZTUNNEL_SERVICE_ACCOUNT).automountServiceAccountToken, false)
})

t.test('the controller Deployment runs `ambit controller` as it needs', async (t) => {
  const installed = await installedObjects()
  const deployment = find(installed, 'Deployment', 'ambit-controller')
  const template = podTemplate(deployment)
  const c = container(deployment, 'controller')
  t.equal(c.image, IMAGE)
  t.equal((deployment.spec as { replicas: number }).replicas, 1, 'one replica: the controller is the only writer of the mesh state')
  t.equal(template.spec.serviceAccountName, CONTROLLER_SERVICE_ACCOUNT, 'it runs as the ServiceAccount the RBAC binds')

  const parsed = commandArgs(t, c, controllerCommand)
  requireFlags(t, parsed, ['store'])
  checkStoreFromConfig(t, parsed, c, installed)
  t.strictSame(parsed.flags.file, undefined, 'no -f: in a cluster the resources come from the API server')
  t.equal(stringFlag(parsed, 'ca-address'), '0.0.0.0', 'the CA listens beyond loopback')
  t.equal(stringFlag(parsed, 'ztunnel-service-account'), `${AMBIT_NAMESPACE}/${ZTUNNEL_SERVICE_ACCOUNT}`, 'the CA takes the ztunnel DaemonSet\'s tokens as node credentials')
  const serverNames = listFlag(parsed, 'ca-server-name')
  for (const host of [`ambit-controller.${AMBIT_NAMESPACE}.svc`, `ambit-controller.${AMBIT_NAMESPACE}.svc.cluster.local`]) {
    t.ok(serverNames.includes(host), `the CA's serving certificate names ${host} (the host of the proxies' --ca)`)
  }

  const caPort = Number(stringFlag(parsed, 'ca-port') ?? controllerCommand.flags['ca-port']?.default)
  t.equal(caPort, 15012)
  t.strictSame(Object.fromEntries(c.ports?.map((p) => [p.name, p.containerPort]) ?? []), { 'https-ca': caPort, 'http-monitoring': 15014 }, 'CA on 15012; dashboard, metrics and health on 15014')
  const statusPort = Number(stringFlag(parsed, 'status-port') ?? controllerCommand.flags['status-port']?.default)
  t.equal(statusPort, 15014, 'health and metrics on 15014')
  t.equal(stringFlag(parsed, 'status-address'), '0.0.0.0', 'beyond loopback, for the kubelet and Prometheus')
  t.strictSame(c.readinessProbe?.httpGet, { path: '/healthz/ready', port: 'http-monitoring' }, 'readiness is /healthz/ready on the status port')
  t.strictSame(template.metadata.annotations, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(statusPort), 'prometheus.io/path': '/metrics' },
    'Prometheus scrapes /metrics on the status port')

  const service = find(installed, 'Service', 'ambit-controller')
  checkServiceTargets(t, service, deployment)
  t.strictSame((service.spec as ServiceSpec).ports.map((p) => [p.name, p.port]), [['https-ca', 15012], ['http-monitoring', 15014]])
})

t.test('Redis is one replica behind the Service that storeUrl names', async (t) => {
  const installed = await installedObjects()
  const deployment = find(installed, 'Deployment', 'ambit-redis')
  t.equal((deployment.spec as { replicas: number }).replicas, 1)
  checkServiceTargets(t, find(installed, 'Service', 'ambit-redis'), deployment)
})

t.test('the waypoint template runs `ambit waypoint` for its Gateway', async (t) => {
  const raw = await readFile(TEMPLATE_FILE, 'utf8')
  const body = raw.split('\n').filter((line) => !line.startsWith('#')).join('\n')
  t.strictSame(sortedUnique([...body.matchAll(/\$\{[A-Z_]+\}/g)].map((m) => m[0])), sortedUnique(Object.values(WAYPOINT_TEMPLATE.placeholders)),
    'the template uses exactly the placeholders WAYPOINT_TEMPLATE names')
  t.notMatch(body, /\$\((?!\w+\))|\{\{/, 'and no other templating')

  const objects = parseObjects(await renderedTemplate(), WAYPOINT_TEMPLATE.file)
  t.strictSame(objects.map((o) => o.kind), ['ServiceAccount', 'Deployment', 'Service'])
  for (const object of objects) {
    t.equal(object.metadata.name, GATEWAY.name, `the ${object.kind} is named after the Gateway`)
    t.equal(object.metadata.namespace, GATEWAY.namespace, `the ${object.kind} is in the Gateway's namespace`)
    t.equal(object.metadata.labels?.[GATEWAY_NAME_LABEL], GATEWAY.name, `the ${object.kind} carries ${GATEWAY_NAME_LABEL}`)
  }
  const deployment = find(objects, 'Deployment', GATEWAY.name)
  const template = podTemplate(deployment)
  const c = container(deployment, 'waypoint')
  t.equal(c.image, IMAGE)
  t.equal(template.metadata.labels?.[GATEWAY_NAME_LABEL], GATEWAY.name, 'its pods are the Gateway\'s instances in the mesh state')
  t.not(template.metadata.labels?.[AMBIENT_LABEL], AMBIENT_VALUE, 'its own traffic is not captured')
  t.equal(template.spec.serviceAccountName, GATEWAY.name, 'its identity is the Gateway\'s name')
  t.equal(template.spec.automountServiceAccountToken, false, 'it holds no API token')

  const parsed = commandArgs(t, c, waypointCommand)
  requireFlags(t, parsed, ['name', 'namespace', 'store', 'ca', 'token-file'])
  t.equal(stringFlag(parsed, 'name'), GATEWAY.name)
  t.equal(stringFlag(parsed, 'namespace'), GATEWAY.namespace)
  t.equal(stringFlag(parsed, 'store'), TEMPLATE_VALUES.storeUrl)
  checkCaUrl(t, parsed, await installedObjects())
  checkCaToken(t, parsed, c, template.spec)
  t.strictSame(Object.fromEntries(c.ports?.map((p) => [p.name, p.containerPort]) ?? []), {
    hbone: DEFAULT_ZTUNNEL_PORTS.hbone, 'http-metrics': DEFAULT_ZTUNNEL_PORTS.metrics, health: DEFAULT_ZTUNNEL_PORTS.readiness
  }, 'HBONE on 15008, metrics on 15020, readiness on 15021')
  checkReadiness(t, c)
  checkScrapeAnnotations(t, template, c)
  checkServiceTargets(t, find(objects, 'Service', GATEWAY.name), deployment)
})

t.test('the GatewayClass is the one waypoints name', async (t) => {
  const gatewayClass = find(await installedObjects(), 'GatewayClass', WAYPOINT_CLASS)
  t.match(gatewayClass.spec, { controllerName: /^ambit\.dev\// })
})

t.test('the PodMonitors scrape the ports the pods serve metrics on', async (t) => {
  const monitors = await loadObjects(join(K8S_DIR, 'extras/podmonitor.yaml'))
  const ztunnel = podTemplate(find(await installedObjects(), 'DaemonSet', 'ambit-ztunnel'))
  const waypoint = podTemplate(find(parseObjects(await renderedTemplate(), 'template'), 'Deployment', GATEWAY.name))
  for (const [monitorName, template] of [['ambit-ztunnel', ztunnel], ['ambit-waypoints', waypoint]] as const) {
    const spec = find(monitors, 'PodMonitor', monitorName).spec as {
      selector: { matchLabels: Record<string, string> }, podMetricsEndpoints: Array<{ port: string, path: string }>
    }
    for (const [key, value] of Object.entries(spec.selector.matchLabels)) t.equal(template.metadata.labels?.[key], value, `${monitorName} selects ${key}=${value}`)
    const ports = template.spec.containers.flatMap((c) => c.ports ?? [])
    for (const endpoint of spec.podMetricsEndpoints) {
      t.equal(ports.find((p) => p.name === endpoint.port)?.containerPort, DEFAULT_ZTUNNEL_PORTS.metrics, `${monitorName} scrapes port 15020`)
      t.equal(endpoint.path, '/metrics')
    }
  }
})
