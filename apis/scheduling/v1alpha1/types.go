package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxPodGroups is the most pod groups a Workload may have, as in the
// built-in API.
const MaxPodGroups = 8

// Workload names the pod groups of a workload and how each is scheduled,
// exactly as the built-in scheduling.k8s.io/v1alpha1 Workload does. The API
// server enforces the built-in API's validation through the schema and CEL
// rules of the CustomResourceDefinition.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=workloads,singular=workload,shortName=wcsworkload;wcsw,categories=workload-coscheduling
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Workload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the workload's pod groups. It cannot change once created,
	// except that a controllerRef may be set where there was none.
	// +required
	Spec WorkloadSpec `json:"spec"`
}

// WorkloadList is a list of Workloads.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type WorkloadList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Workload `json:"items"`
}

// WorkloadSpec is the pod groups of a Workload and the object that manages
// it.
//
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.controllerRef) || (has(self.controllerRef) && self.controllerRef == oldSelf.controllerRef)",message="controllerRef: field is immutable"
type WorkloadSpec struct {
	// ControllerRef points at the object that manages this Workload (a Job,
	// a JobSet...), for tools and people; the scheduler does not read it.
	// +optional
	ControllerRef *TypedLocalObjectReference `json:"controllerRef,omitempty"`

	// PodGroups are the groups of pods of the workload: 1 to 8, each name
	// unique. They cannot change once created.
	//
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="podGroups: field is immutable"
	PodGroups []PodGroup `json:"podGroups"`
}

// TypedLocalObjectReference names an object in the Workload's namespace.
type TypedLocalObjectReference struct {
	// APIGroup is the group of the object; empty for the core group.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	APIGroup string `json:"apiGroup,omitempty"`
	// Kind is the type of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..' && !self.contains('/') && !self.contains('%')",message="may not be '.' or '..' and may not contain '/' or '%'"
	Kind string `json:"kind"`
	// Name is the name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..' && !self.contains('/') && !self.contains('%')",message="may not be '.' or '..' and may not contain '/' or '%'"
	Name string `json:"name"`
}

// PodGroup is a set of pods with one scheduling policy.
type PodGroup struct {
	// Name identifies the group within the Workload; pods name it to join.
	// It must be a DNS label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Policy is how the group's pods are scheduled.
	// +required
	Policy PodGroupPolicy `json:"policy"`

	// SchedulingConstraints place each gang of the group inside one
	// topology domain. Not in the built-in 1.35 API: topology is
	// upstream's 1.36 shape, preferredTopology is this scheduler's. On a
	// basic group they do nothing.
	// +optional
	SchedulingConstraints *PodGroupSchedulingConstraints `json:"schedulingConstraints,omitempty"`
}

// PodGroupSchedulingConstraints say where a gang's members land together.
// They take the place of the Workload's topology annotations for the group.
type PodGroupSchedulingConstraints struct {
	// Topology is required: every member of a gang on nodes with the same
	// value of the key, or none placed. One key, as upstream.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1
	Topology []TopologyConstraint `json:"topology,omitempty"`

	// PreferredTopology are keys tried narrowest first: the gang goes inside
	// one domain of the first key that has one with room, else of the next,
	// else anywhere (inside its required domain, when it has one). A
	// preference never keeps a gang pending.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:validation:XValidation:rule="self.all(x, self.exists_one(y, y.key == x.key))",message="keys must be unique"
	PreferredTopology []TopologyConstraint `json:"preferredTopology,omitempty"`
}

// TopologyConstraint names a topology level by a node label key, such as
// topology.kubernetes.io/zone or a rack label of the cluster's own.
type TopologyConstraint struct {
	// Key is a node label key: an optional DNS subdomain prefix and '/',
	// then a name of at most 63 characters.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self.size() - self.lastIndexOf('/') - 1 <= 63 && self.lastIndexOf('/') <= 253",message="must be a label key: a prefix of at most 253 characters and a name of at most 63"
	Key string `json:"key"`
}

// PodGroupPolicy is exactly one of basic or gang.
//
// +kubebuilder:validation:XValidation:rule="has(self.basic) != has(self.gang)",message="exactly one of `basic`, `gang` is required"
type PodGroupPolicy struct {
	// Basic schedules the pods one by one, like pods of no group.
	// +optional
	Basic *BasicSchedulingPolicy `json:"basic,omitempty"`

	// Gang schedules the pods all-or-nothing: none is bound until minCount
	// of them can be.
	// +optional
	Gang *GangSchedulingPolicy `json:"gang,omitempty"`
}

// BasicSchedulingPolicy has no fields: the pods are only grouped.
type BasicSchedulingPolicy struct{}

// GangSchedulingPolicy places at least MinCount pods of the group together,
// or none.
type GangSchedulingPolicy struct {
	// MinCount is how many pods must be placeable at once for any to be
	// bound.
	// +required
	// +kubebuilder:validation:Minimum=1
	MinCount int32 `json:"minCount"`
}
