/**
 * Label selectors: which workloads a policy or Service selects.
 *
 * Two shapes exist in the resources: Istio's `selector.matchLabels` (a plain label map)
 * and Kubernetes' LabelSelector (matchLabels plus matchExpressions).
 */
import type { LabelSelector, LabelSelectorRequirement, Labels } from './resources.js'

/**
 * True when every label of the selector is on the workload with the same value.
 * An absent or empty selector selects everything, as Istio's `selector` does.
 */
export function selectorMatches (selector: Labels | undefined, labels: Labels): boolean {
  if (selector === undefined) return true
  for (const key in selector) {
    if (labels[key] !== selector[key]) return false
  }
  return true
}

/**
 * Kubernetes LabelSelector semantics: matchLabels and every matchExpression must hold
 * (AND); an empty selector selects everything.
 */
export function labelSelectorMatches (selector: LabelSelector, labels: Labels): boolean {
  return selectorMatches(selector.matchLabels, labels) &&
    selector.matchExpressions.every((requirement) => requirementMatches(requirement, labels))
}

function requirementMatches (requirement: LabelSelectorRequirement, labels: Labels): boolean {
  const present = Object.hasOwn(labels, requirement.key)
  switch (requirement.operator) {
    case 'In':
      return present && requirement.values.includes(labels[requirement.key])
    case 'NotIn':
      // Kubernetes: a workload without the label is "not in" any set of values.
      return !present || !requirement.values.includes(labels[requirement.key])
    case 'Exists':
      return present
    case 'DoesNotExist':
      return !present
  }
}
