package v1alpha1

import (
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodGroupLabel is the label a pod names its PodGroup with, in its own
// namespace.
const PodGroupLabel = GroupName + "/pod-group"

// PodGroupPhase is where a PodGroup's pods are, as a whole.
type PodGroupPhase string

// The phases of a PodGroup, as scheduler-plugins defines them.
const (
	// PodGroupPending: fewer than minMember pods exist, or none was tried yet.
	PodGroupPending PodGroupPhase = "Pending"
	// PodGroupScheduling: minMember pods exist and are being placed; fewer
	// than minMember run.
	PodGroupScheduling PodGroupPhase = "Scheduling"
	// PodGroupRunning: at least minMember pods run or have succeeded.
	PodGroupRunning PodGroupPhase = "Running"
	// PodGroupFinished: at least minMember pods have succeeded.
	PodGroupFinished PodGroupPhase = "Finished"
	// PodGroupFailed: a pod failed and the others cannot make minMember.
	PodGroupFailed PodGroupPhase = "Failed"
	// PodGroupUnknown: part of the group was placed and the rest cannot be.
	PodGroupUnknown PodGroupPhase = "Unknown"
)

// PodGroup is a gang of pods: the pods labelled with its name are placed
// minMember at a time or not at all.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName={pg,pgs}
// +kubebuilder:subresource:status
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=https://github.com/kubernetes-sigs/scheduler-plugins/pull/50"
// +kubebuilder:printcolumn:name="Phase",JSONPath=".status.phase",type=string,description="Current phase of PodGroup."
// +kubebuilder:printcolumn:name="MinMember",JSONPath=".spec.minMember",type=integer,description="MinMember defines the minimal number of members/tasks to run the pod group."
// +kubebuilder:printcolumn:name="Running",JSONPath=".status.running",type=string,description="The number of actively running pods."
// +kubebuilder:printcolumn:name="Succeeded",JSONPath=".status.succeeded",type=string,description="The number of pods which reached phase Succeeded."
// +kubebuilder:printcolumn:name="Failed",JSONPath=".status.failed",type=string,description="The number of pods which reached phase Failed."
// +kubebuilder:printcolumn:name="Age",JSONPath=".metadata.creationTimestamp",type=date,description="Age is the time PodGroup was created."
type PodGroup struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the gang's quorum, the resources it needs and how long its
	// members wait for each other.
	// +optional
	Spec PodGroupSpec `json:"spec,omitempty"`

	// Status is where the group's pods are; the scheduler writes it.
	// +optional
	Status PodGroupStatus `json:"status,omitempty"`
}

// PodGroupSpec is what the gang needs.
type PodGroupSpec struct {
	// MinMember is the gang's quorum: no member is bound unless minMember
	// members can be. 0 or 1: each pod is placed on its own.
	MinMember int32 `json:"minMember,omitempty"`

	// MinResources is the least the gang needs in all; a gang whose
	// minResources exceeds the cluster's free capacity is not tried.
	MinResources v1.ResourceList `json:"minResources,omitempty"`

	// ScheduleTimeoutSeconds is how long members placed wait at Permit for
	// the rest of the gang.
	ScheduleTimeoutSeconds *int32 `json:"scheduleTimeoutSeconds,omitempty"`
}

// PodGroupStatus is where the group's pods are.
type PodGroupStatus struct {
	// Phase of the group.
	Phase PodGroupPhase `json:"phase,omitempty"`

	// OccupiedBy names the workload that owns the group's pods.
	OccupiedBy string `json:"occupiedBy,omitempty"`

	// Running is the number of pods running.
	// +optional
	Running int32 `json:"running,omitempty"`

	// Succeeded is the number of pods that succeeded.
	// +optional
	Succeeded int32 `json:"succeeded,omitempty"`

	// Failed is the number of pods that failed.
	// +optional
	Failed int32 `json:"failed,omitempty"`

	// ScheduleStartTime is when the scheduler first tried the group.
	ScheduleStartTime metav1.Time `json:"scheduleStartTime,omitempty"`
}

// PodGroupList is a list of PodGroups.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type PodGroupList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []PodGroup `json:"items"`
}
