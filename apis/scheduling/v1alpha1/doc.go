// +k8s:deepcopy-gen=package
// +groupName=scheduling.workload-coscheduling.io

// Package v1alpha1 is the portable Workload API: a CustomResourceDefinition
// with exactly the spec of the built-in scheduling.k8s.io/v1alpha1 Workload,
// for clusters whose API server does not serve that alpha API (managed control
// planes, and 1.36+, which dropped spec.workloadRef). Pods join its pod groups
// with annotations instead of spec.workloadRef.
package v1alpha1
