/** Plain TCP from a proxy to a pod or an outside address, with a connect timeout. */
import net from 'node:net'

export const CONNECT_TIMEOUT_MS = 5_000

/**
 * Connects a TCP socket, failing after `timeoutMs`. `createSocket` lets the capture mode hand
 * in a socket marked (SO_MARK) before its SYN, so the capture rules let it through.
 */
export function connectTcp (ip: string, port: number, options: { timeoutMs?: number, createSocket?: () => net.Socket } = {}): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = options.createSocket?.() ?? new net.Socket({ allowHalfOpen: true })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(Object.assign(new Error(`connect to ${ip}:${port} timed out`), { code: 'ETIMEDOUT' }))
    }, options.timeoutMs ?? CONNECT_TIMEOUT_MS)
    socket.once('error', (err) => { clearTimeout(timer); reject(err) })
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.connect({ host: ip, port, noDelay: true })
  })
}
