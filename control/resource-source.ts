/**
 * Where the controller's resources come from. Every origin (YAML files, what `ambit apply`
 * stored, a Kubernetes API server) is a ResourceSource, and the controller merges them all
 * through one code path: it does not know, or need to know, what is behind a source.
 */
import type { EventEmitter } from 'node:events'
import type { Resource } from '../policy/resources.js'
import type { MeshState } from '../policy/state.js'

export interface ResourceSourceEvents {
  /** resources() changed. */
  update: []
}

export interface ResourceSource extends EventEmitter<ResourceSourceEvents> {
  /** Resolves once resources() holds the source's first complete set; rejects when the source cannot be used. */
  start (): Promise<void>
  stop (): Promise<void>
  /** The current valid resources (a source skips and reports its bad ones itself). */
  resources (): Iterable<Resource>
  /** Told each state the controller commits, for a source that reports back where its resources came from. */
  committed? (state: MeshState): void
}
