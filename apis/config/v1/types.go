package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WorkloadCoschedulingArgs holds the arguments of the WorkloadCoscheduling plugin.
type WorkloadCoschedulingArgs struct {
	metav1.TypeMeta `json:",inline"`

	// PermitWaitingTimeSeconds is how long the reserved members of a gang wait
	// at Permit for the rest of their gang before all of them are rejected.
	// Defaults to 60. Must be between 1 and 900: the scheduling framework caps
	// any Permit wait at 15 minutes, so a longer value would be cut silently.
	// +optional
	PermitWaitingTimeSeconds *int64 `json:"permitWaitingTimeSeconds,omitempty"`

	// PodGroupBackoffSeconds is how long a gang is held back after a failed
	// attempt (a member that fits nowhere, a Permit timeout, a bind error)
	// before its members are tried again, so that a gang that cannot fit does
	// not take scheduling cycles from the others. Defaults to 10; 0 turns the
	// backoff off. At most 3600.
	// +optional
	PodGroupBackoffSeconds *int64 `json:"podGroupBackoffSeconds,omitempty"`
}
