/** The resources `ambit apply` put in the store's 'resources' keyspace, followed as they change. */
import { EventEmitter } from 'node:events'
import { StateFollower } from './follower.js'
import type { ResourceSource, ResourceSourceEvents } from './resource-source.js'
import type { Store } from './store.js'
import type { Resource } from '../policy/resources.js'

export class AppliedSource extends EventEmitter<ResourceSourceEvents> implements ResourceSource {
  private readonly follower: StateFollower

  constructor (store: Store) {
    super()
    this.follower = new StateFollower(store, 'resources')
    this.follower.on('update', () => this.emit('update'))
  }

  start (): Promise<void> {
    return this.follower.start()
  }

  async stop (): Promise<void> {
    this.follower.stop()
  }

  resources (): Iterable<Resource> {
    // `ambit apply` validated them before writing them.
    return this.follower.entries.values() as Iterable<Resource>
  }
}
