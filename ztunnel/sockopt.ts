/**
 * The few socket calls Node lacks, made on libc through koffi (Linux only):
 * reading a socket option (SO_ORIGINAL_DST, see original-dst.ts) and marking the ztunnel's own
 * connections with SO_MARK so that the capture rules (capture.ts) let them through.
 */
import net from 'node:net'
import { getSystemErrorName } from 'node:util'
import koffi from 'koffi'
import { SocketOptionError } from '../policy/errors.js'

/** Linux values from <sys/socket.h>, <netinet/in.h> and <asm-generic/socket.h>. */
export const SOL_SOCKET = 1
export const SO_MARK = 36
const AF_INET = 2
const AF_INET6 = 10
const SOCK_STREAM = 1
const SOCK_NONBLOCK = 0o4000
const SOCK_CLOEXEC = 0o2000000

interface Libc {
  getsockopt (fd: number, level: number, name: number, value: Buffer, length: [number]): number
  setsockopt (fd: number, level: number, name: number, value: Buffer, length: number): number
  socket (domain: number, type: number, protocol: number): number
  close (fd: number): number
}

let libc: Libc | undefined

/** Loaded on first use, so that importing this module works on any platform. */
function loadLibc (): Libc {
  if (libc !== undefined) return libc
  const lib = koffi.load('libc.so.6')
  libc = {
    getsockopt: lib.func('int getsockopt(int fd, int level, int name, _Out_ uint8_t *value, _Inout_ uint32_t *length)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, const uint8_t *value, uint32_t length)'),
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    close: lib.func('int close(int fd)')
  }
  return libc
}

/**
 * Node keeps a socket's file descriptor on its internal libuv handle (`_handle.fd`) and has no
 * public API for it; that handle is null before connect() and after close.
 */
interface SocketInternals {
  readonly _handle?: { readonly fd?: unknown } | null
}

/** The socket's file descriptor; throws if it has none (not connected yet, or closed). */
export function socketFd (socket: net.Socket): number {
  const fd = (socket as unknown as SocketInternals)._handle?.fd
  if (typeof fd !== 'number' || fd < 0) throw new SocketOptionError('socket has no file descriptor (not connected, or closed)', 'EBADF')
  return fd
}

/** getsockopt(2): the option's value, `size` bytes at most (the kernel may write fewer). */
export function getSocketOption (socket: net.Socket, level: number, name: number, size: number): Buffer {
  const value = Buffer.alloc(size)
  const length: [number] = [size]
  if (loadLibc().getsockopt(socketFd(socket), level, name, value, length) !== 0) {
    throw errnoError(`getsockopt(level ${level}, option ${name})`)
  }
  return value.subarray(0, length[0])
}

/** setsockopt(2) on a file descriptor. */
export function setSocketOption (fd: number, level: number, name: number, value: Buffer): void {
  if (loadLibc().setsockopt(fd, level, name, value, value.length) !== 0) {
    throw errnoError(`setsockopt(level ${level}, option ${name})`)
  }
}

/**
 * Sets SO_MARK on a socket that already has a descriptor. The mark only applies to packets sent
 * after this call, so it cannot exempt the SYN of a net.connect() socket: for new upstream
 * connections use markedSocket(). Needs CAP_NET_ADMIN.
 */
export function setSocketMark (socket: net.Socket, mark: number): void {
  setSocketOption(socketFd(socket), SOL_SOCKET, SO_MARK, uint32(mark))
}

/**
 * A TCP socket, not connected yet, whose every packet carries `mark`: call `.connect()` on it.
 * The ztunnel opens its upstream connections this way so the capture rules skip them
 * (`-m mark --mark MARK/MASK -j RETURN`); Node creates its own descriptors only inside
 * connect(), too late to mark the SYN, hence the socket(2) call here.
 */
export function markedSocket (mark: number, family: 4 | 6 = 4): net.Socket {
  const c = loadLibc()
  const fd = c.socket(family === 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
  if (fd < 0) throw errnoError('socket()')
  try {
    setSocketOption(fd, SOL_SOCKET, SO_MARK, uint32(mark))
    // manualStart (an option Node's own child_process uses) stops Node from reading the
    // unconnected descriptor right away, which fails with ENOTCONN; reading starts on connect.
    return new net.Socket({ fd, manualStart: true } as net.SocketConstructorOpts)
  } catch (err) {
    c.close(fd)
    throw err
  }
}

/** A C int in the machine's byte order, as setsockopt expects. */
function uint32 (value: number): Buffer {
  return Buffer.from(new Uint32Array([value >>> 0]).buffer)
}

function errnoError (call: string): SocketOptionError {
  const errno = koffi.errno()
  const name = errno > 0 ? getSystemErrorName(-errno) : 'UNKNOWN'
  return new SocketOptionError(`${call} failed: ${name}`, name)
}
