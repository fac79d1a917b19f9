/**
 * Every `ambit` subcommand, in the order --help lists them. Each is loaded only when used:
 * the proxies and the Kubernetes client are heavy, and `ambit get` should start fast.
 */
import type { Command } from '../command.js'

const LOADERS: ReadonlyArray<readonly [string, () => Promise<Command>]> = [
  ['up', async () => (await import('./up.js')).upCommand],
  ['controller', async () => (await import('./controller.js')).controllerCommand],
  ['ztunnel', async () => (await import('./ztunnel.js')).ztunnelCommand],
  ['waypoint', async () => (await import('./waypoint.js')).waypointCommand],
  ['waypoint apply', async () => (await import('./waypoint-apply.js')).waypointApplyCommand],
  ['waypoint delete', async () => (await import('./waypoint-apply.js')).waypointDeleteCommand],
  ['apply', async () => (await import('./apply.js')).applyCommand],
  ['get', async () => (await import('./get.js')).getCommand],
  ['explain', async () => (await import('./explain.js')).explainCommand]
]

export const COMMAND_NAMES: readonly string[] = LOADERS.map(([name]) => name)

export async function loadCommand (name: string): Promise<Command> {
  const loader = LOADERS.find(([n]) => n === name)
  if (loader === undefined) throw new Error(`no command ${name}`)
  return await loader[1]()
}

export async function loadCommands (): Promise<Command[]> {
  return await Promise.all(LOADERS.map(([, load]) => load()))
}
