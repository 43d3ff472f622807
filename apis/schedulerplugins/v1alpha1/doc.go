// +k8s:deepcopy-gen=package
// +groupName=scheduling.x-k8s.io
// +groupGoName=SchedulerPlugins

// Package v1alpha1 is scheduler-plugins' PodGroup (scheduling.x-k8s.io/v1alpha1),
// the gang API of its Coscheduling plugin that KubeRay, the Kubeflow training
// operator and others write. The types are ours, field for field the same on
// the wire, so this module does not import scheduler-plugins (and the
// Kubernetes versions it pins). Only PodGroup is here: ElasticQuota, the
// group's other kind, is no gang.
package v1alpha1
