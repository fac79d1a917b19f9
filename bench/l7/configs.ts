/**
 * The configuration files of what bench/l7 runs, as text: the two HTTP reverse proxies (nginx,
 * haproxy) and the two meshes (the full path under `ambit up`, and the waypoint alone). Pure
 * functions: the caller writes them into its temporary directory.
 */
import { hostPort, type Address } from '../l4/configs.js'

/**
 * nginx as an HTTP reverse proxy, keep-alive to the server: what a tuned L7 proxy costs. One
 * process (no master), so /proc of the pid we started holds all its CPU. Its files live under
 * `dir`, apart from the server nginx's.
 */
export function nginxProxyConfig (dir: string, listen: Address, server: Address): string {
  return `master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  upstream app {
    server ${hostPort(server)};
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen ${hostPort(listen)};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`
}

/** haproxy in HTTP mode, one thread (like the waypoint's one event loop), reusing server connections. */
export function haproxyHttpConfig (listen: Address, server: Address): string {
  return `global
  nbthread 1
  maxconn 4000
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend http_in
  bind ${hostPort(listen)}
  default_backend app
backend app
  http-reuse always
  server app ${hostPort(server)}
`
}

export interface L7Mesh {
  /** The nodes' addresses, by name. */
  readonly nodes: Readonly<Record<string, string>>
  /** The waypoint pod, on `waypointNode`. */
  readonly waypointIp: string
  readonly waypointNode: string
  /** The client pod (absent when nothing calls through a ztunnel). */
  readonly client?: { readonly ip: string, readonly node: string }
  /** The server pod (nginx); a node not in `nodes` leaves it outside the mesh. */
  readonly server: Address & { readonly node: string }
  /** The Service in front of the server, which the waypoint serves. */
  readonly serviceVip: string
}

export const NAMESPACE = 'bench'
export const SERVICE = 'server'
export const SERVICE_PORT = 80

/**
 * One ambient namespace using a waypoint, a Service `server` in front of nginx, and one
 * HTTPRoute to it: the waypoint matches a route on every request, as in production.
 */
export function l7MeshYaml (m: L7Mesh): string {
  const node = (name: string, ip: string): string =>
    `apiVersion: v1\nkind: Node\nmetadata: { name: ${name} }\nstatus:\n  addresses: [{ type: InternalIP, address: ${ip} }]\n`
  const pod = (name: string, labels: string, nodeName: string, ip: string, serviceAccount: string, port?: number): string =>
    `apiVersion: v1\nkind: Pod\nmetadata: { name: ${name}, namespace: ${NAMESPACE}, labels: { ${labels} } }\n` +
    `spec:\n  nodeName: ${nodeName}\n  serviceAccountName: ${serviceAccount}\n` +
    (port === undefined ? '' : `  containers: [{ name: ${name}, image: bench, ports: [{ containerPort: ${port} }] }]\n`) +
    `status: { phase: Running, podIP: ${ip} }\n`
  return [
    `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${NAMESPACE}\n  labels: { ambit.dev/dataplane-mode: ambient, ambit.dev/use-waypoint: waypoint }\n`,
    ...Object.entries(m.nodes).map(([name, ip]) => node(name, ip)),
    `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: { name: waypoint, namespace: ${NAMESPACE} }\n` +
      'spec:\n  gatewayClassName: ambit-waypoint\n  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]\n',
    pod('waypoint-0', 'gateway.networking.k8s.io/gateway-name: waypoint', m.waypointNode, m.waypointIp, 'waypoint'),
    ...(m.client === undefined ? [] : [pod('client', 'app: client', m.client.node, m.client.ip, 'client')]),
    pod('server', 'app: server', m.server.node, m.server.host, 'server', m.server.port),
    `apiVersion: v1\nkind: Service\nmetadata: { name: ${SERVICE}, namespace: ${NAMESPACE} }\n` +
      `spec: { selector: { app: server }, clusterIP: ${m.serviceVip}, ports: [{ name: http, port: ${SERVICE_PORT}, targetPort: ${m.server.port}, appProtocol: http }] }\n`,
    `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: to-server, namespace: ${NAMESPACE} }\n` +
      `spec:\n  parentRefs: [{ group: "", kind: Service, name: ${SERVICE}, port: ${SERVICE_PORT} }]\n` +
      `  rules:\n    - backendRefs: [{ name: ${SERVICE}, port: ${SERVICE_PORT} }]\n`
  ].join('---\n')
}
