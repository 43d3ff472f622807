// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/workload-coscheduling/workload-coscheduling/apis/config
// +k8s:defaulter-gen=TypeMeta
// +k8s:defaulter-gen-input=github.com/workload-coscheduling/workload-coscheduling/apis/config/v1

// Package v1 holds the versioned (kubescheduler.config.k8s.io/v1) types of
// the plugin arguments this project adds to a KubeSchedulerConfiguration.
package v1
