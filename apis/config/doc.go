// +k8s:deepcopy-gen=package

// Package config holds the internal types of the plugin arguments this
// project adds to a KubeSchedulerConfiguration.
package config
