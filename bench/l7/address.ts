/** `IPv4:port` command-line flags of bench/l7's helper processes. */
export function parseAddress (text: string | undefined, flag: string): { host: string, port: number } {
  const match = /^([\d.]+):(\d+)$/.exec(text ?? '')
  if (match === null) throw new Error(`--${flag} must be IPv4:port, got ${String(text)}`)
  return { host: match[1]!, port: Number(match[2]) }
}
