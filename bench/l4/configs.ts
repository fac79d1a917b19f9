/**
 * The configuration files of everything bench/l4 runs, as text: the HTTP server (nginx), the two
 * peer mTLS proxy pairs (haproxy, stunnel), and the mesh ambit serves. Pure functions: the
 * caller writes them into its temporary directory.
 *
 * Every pair has the same shape as ambit's two ztunnels: side A takes plain TCP and opens
 * mutual TLS (TLS 1.3, presenting a client certificate, verifying the server's chain and name);
 * side B terminates it, requires and verifies the client certificate, and dials the server.
 */

export interface Address {
  readonly host: string
  readonly port: number
}

export const hostPort = (a: Address): string => `${a.host}:${a.port}`

/** nginx with one worker answering `200 ok` to everything, all its files under `dir`. */
export function nginxConfig (dir: string, listen: Address): string {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-body;
  proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fastcgi;
  uwsgi_temp_path ${dir}/nginx-uwsgi;
  scgi_temp_path ${dir}/nginx-scgi;
  keepalive_requests 10000000;
  server {
    listen ${hostPort(listen)} reuseport;
    location / { return 200 "ok"; }
  }
}
`
}

/** The certificate files both peer pairs use (made by certificates.ts). */
export interface TlsFiles {
  readonly ca: string
  /** The server name in the server certificate, checked by side A. */
  readonly serverName: string
  readonly serverCert: string
  readonly serverKey: string
  /** Certificate and key in one PEM file, as haproxy wants them. */
  readonly serverPem: string
  readonly clientCert: string
  readonly clientKey: string
  readonly clientPem: string
}

export interface PairAddresses {
  /** Where side A takes plain TCP (the load generator connects here). */
  readonly entry: Address
  /** Where side B takes mutual TLS from side A. */
  readonly tunnel: Address
  /** The HTTP server side B dials. */
  readonly server: Address
}

/**
 * One thread per haproxy: each ztunnel of the pair runs on one event loop too, so CPU per
 * request compares like with like. haproxy resumes TLS sessions to its server side by default,
 * which is what it does in production; that stays on.
 */
const HAPROXY_COMMON = `global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
`

export function haproxyClientConfig (a: PairAddresses, tls: TlsFiles): string {
  return `${HAPROXY_COMMON}
frontend plain_in
  bind ${hostPort(a.entry)}
  default_backend mtls_out
backend mtls_out
  server side_b ${hostPort(a.tunnel)} ssl ssl-min-ver TLSv1.3 crt ${tls.clientPem} ca-file ${tls.ca} verify required verifyhost ${tls.serverName} sni str(${tls.serverName})
`
}

export function haproxyServerConfig (a: PairAddresses, tls: TlsFiles): string {
  return `${HAPROXY_COMMON}
frontend mtls_in
  bind ${hostPort(a.tunnel)} ssl ssl-min-ver TLSv1.3 crt ${tls.serverPem} ca-file ${tls.ca} verify required
  default_backend plain_out
backend plain_out
  server app ${hostPort(a.server)}
`
}

/** stunnel in the foreground, logging errors only, with Nagle off on both sides like the others. */
const STUNNEL_COMMON = `foreground = yes
pid =
debug = 3
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
`

export function stunnelClientConfig (a: PairAddresses, tls: TlsFiles): string {
  return `${STUNNEL_COMMON}
[mtls_out]
client = yes
accept = ${hostPort(a.entry)}
connect = ${hostPort(a.tunnel)}
sni = ${tls.serverName}
cert = ${tls.clientCert}
key = ${tls.clientKey}
CAfile = ${tls.ca}
verifyChain = yes
checkHost = ${tls.serverName}
sslVersionMin = TLSv1.3
`
}

export function stunnelServerConfig (a: PairAddresses, tls: TlsFiles): string {
  return `${STUNNEL_COMMON}
[mtls_in]
accept = ${hostPort(a.tunnel)}
connect = ${hostPort(a.server)}
cert = ${tls.serverCert}
key = ${tls.serverKey}
CAfile = ${tls.ca}
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
`
}

export interface BenchMesh {
  readonly nodes: Readonly<Record<string, string>>
  /** In the mesh, on the first node: wrk runs in its namespace. */
  readonly client: { readonly node: string, readonly ip: string }
  /** In the mesh, on the second node: nginx listens there, behind `service`. */
  readonly server: { readonly node: string, readonly address: Address }
  /** The server's Service: wrk's connections to it are captured by the client's ztunnel. */
  readonly service: Address
  /** Outside the mesh (a namespace without the ambient label): the peer pairs' client and server. */
  readonly outside: ReadonlyArray<{ readonly name: string, readonly node: string, readonly ip: string }>
}

/** The nodes, the mesh's client and server pods and Service, and the pods outside the mesh. */
export function meshYaml (m: BenchMesh): string {
  const namespace = (name: string, ambient: boolean): string =>
    `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n${ambient ? '  labels: { ambit.dev/dataplane-mode: ambient }\n' : ''}`
  const node = (name: string, ip: string): string =>
    `apiVersion: v1\nkind: Node\nmetadata: { name: ${name} }\nstatus:\n  addresses: [{ type: InternalIP, address: ${ip} }]\n`
  const pod = (name: string, ns: string, nodeName: string, ip: string, port: number): string =>
    `apiVersion: v1\nkind: Pod\nmetadata: { name: ${name}, namespace: ${ns}, labels: { app: ${name} } }\n` +
    `spec:\n  nodeName: ${nodeName}\n  serviceAccountName: ${name}\n  containers: [{ name: ${name}, image: bench, ports: [{ containerPort: ${port} }] }]\n` +
    `status: { phase: Running, podIP: ${ip} }\n`
  const service = `apiVersion: v1\nkind: Service\nmetadata: { name: server, namespace: bench }\n` +
    `spec:\n  selector: { app: server }\n  clusterIP: ${m.service.host}\n  ports: [{ name: http, port: ${m.service.port}, targetPort: ${m.server.address.port} }]\n`
  return [
    namespace('bench', true),
    namespace('outside', false),
    ...Object.entries(m.nodes).map(([name, ip]) => node(name, ip)),
    pod('client', 'bench', m.client.node, m.client.ip, 1),
    pod('server', 'bench', m.server.node, m.server.address.host, m.server.address.port),
    ...m.outside.map((p) => pod(p.name, 'outside', p.node, p.ip, 1)),
    service
  ].join('---\n')
}
