package config

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WorkloadCoschedulingArgs holds the arguments of the WorkloadCoscheduling plugin.
type WorkloadCoschedulingArgs struct {
	metav1.TypeMeta

	// PermitWaitingTimeSeconds is how long the reserved members of a gang wait
	// at Permit for the rest of their gang before all of them are rejected.
	PermitWaitingTimeSeconds int64

	// PodGroupBackoffSeconds is how long a gang is held back after a failed
	// attempt before its members are tried again; 0 turns the backoff off.
	PodGroupBackoffSeconds int64
}
