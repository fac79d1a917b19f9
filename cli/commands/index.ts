/** Every `ambit` subcommand, in the order --help lists them. */
import type { Command } from '../command.js'
import { upCommand } from './up.js'
import { controllerCommand } from './controller.js'
import { applyCommand } from './apply.js'
import { getCommand } from './get.js'
import { explainCommand } from './explain.js'
import { ztunnelCommand } from './ztunnel.js'

export const commands: readonly Command[] = [upCommand, controllerCommand, ztunnelCommand, applyCommand, getCommand, explainCommand]
