// Package gang keeps the state of gangs: which pods belong to which gang, how
// far each member has come (present, reserved at Permit, bound, gone), and
// the state machine of each gang's attempt (state.go). It has no client
// code: the plugin feeds it from informers and scheduling callbacks, and
// carries out the Effects each transition returns. On the scheduling hot
// path every operation is a map lookup under a short lock.
package gang

import (
	"cmp"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// Source is the API of the object a gang's pods reference.
type Source uint8

// The sources of gangs, in the order a pod's references are read: a pod with
// more than one belongs to the first.
const (
	// SourceWorkload: spec.workloadRef, a built-in scheduling.k8s.io Workload.
	SourceWorkload Source = iota
	// SourcePortable: the annotations of a portable Workload (the CRD of
	// apis/scheduling/v1alpha1).
	SourcePortable
	// SourcePodGroup: the label of a scheduler-plugins PodGroup
	// (scheduling.x-k8s.io/v1alpha1).
	SourcePodGroup
)

var sourceNames = [...]string{"workload", "portable", "podgroup"}

func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// MarshalText writes the source's name in JSON.
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a source's name.
func (s *Source) UnmarshalText(text []byte) error {
	for i, name := range sourceNames {
		if name == string(text) {
			*s = Source(i)
			return nil
		}
	}
	return fmt.Errorf("unknown gang source %q", text)
}

// Key identifies one gang: the pods of a Workload's podGroup that share a
// podGroupReplicaKey, or the pods of a PodGroup. Different replica keys are
// independent gangs of the same minCount. Source tells the APIs apart: a
// portable Workload or a PodGroup may have the name of a built-in Workload.
// A PodGroup's gang has its name as Workload and no PodGroup.
type Key struct {
	Namespace  string `json:"namespace"`
	Workload   string `json:"workload"`
	PodGroup   string `json:"podGroup,omitempty"`
	ReplicaKey string `json:"replicaKey,omitempty"`
	Source     Source `json:"source,omitempty"`
}

// KeyOf returns the gang key of a pod that references a Workload or a
// PodGroup, and false for a pod that references none. spec.workloadRef wins,
// then the portable annotations, then the PodGroup label (IgnoredReference
// names the loser). The references' values are not checked here: an invalid
// reference is a gang member that must wait, with the reason.
func KeyOf(pod *v1.Pod) (Key, bool) {
	if ref := pod.Spec.WorkloadRef; ref != nil {
		return Key{Namespace: pod.Namespace, Workload: ref.Name, PodGroup: ref.PodGroup, ReplicaKey: ref.PodGroupReplicaKey}, true
	}
	workload, hasWorkload := pod.Annotations[WorkloadAnnotation]
	podGroup, hasPodGroup := pod.Annotations[PodGroupAnnotation]
	if hasWorkload || hasPodGroup {
		return Key{Namespace: pod.Namespace, Workload: workload, PodGroup: podGroup, ReplicaKey: pod.Annotations[ReplicaKeyAnnotation], Source: SourcePortable}, true
	}
	if name, ok := pod.Labels[PodGroupLabel]; ok {
		return Key{Namespace: pod.Namespace, Workload: name, Source: SourcePodGroup}, true
	}
	return Key{}, false
}

// IgnoredReference names the references of the pod that KeyOf passed over
// for a stronger one, or "" when it has at most one kind.
func IgnoredReference(pod *v1.Pod) string {
	var ignored []string
	_, hasWorkload := pod.Annotations[WorkloadAnnotation]
	_, hasPodGroup := pod.Annotations[PodGroupAnnotation]
	portable := hasWorkload || hasPodGroup
	if pod.Spec.WorkloadRef != nil && portable {
		ignored = append(ignored, "annotations "+WorkloadAnnotation+" and "+PodGroupAnnotation)
	}
	if _, ok := pod.Labels[PodGroupLabel]; ok && (pod.Spec.WorkloadRef != nil || portable) {
		ignored = append(ignored, "label "+PodGroupLabel)
	}
	return strings.Join(ignored, "; ")
}

// WorkloadKey names the object the gang belongs to: its Workload, built-in
// or portable, or its PodGroup.
func (k Key) WorkloadKey() WorkloadKey {
	return WorkloadKey{Namespace: k.Namespace, Name: k.Workload, Source: k.Source}
}

// String renders the key as namespace/workload/podGroup, with the replica key
// in brackets when there is one, and "portable:" first for a portable
// Workload; a PodGroup's gang is "podgroup:namespace/name".
func (k Key) String() string {
	if k.Source == SourcePodGroup {
		return "podgroup:" + k.Namespace + "/" + k.Workload
	}
	s := k.Namespace + "/" + k.Workload + "/" + k.PodGroup
	if k.ReplicaKey != "" {
		s += "[" + k.ReplicaKey + "]"
	}
	if k.Source == SourcePortable {
		s = "portable:" + s
	}
	return s
}

// StoreKey is how the pod informer's store indexes the members of a gang
// that one scheduler profile places: the key and the schedulerName.
func StoreKey(key Key, schedulerName string) string {
	return key.String() + "@" + schedulerName
}

// WorkloadKey names a Workload object, built-in or portable, or a PodGroup.
type WorkloadKey struct {
	Namespace string
	Name      string
	Source    Source
}

// Compare orders keys by namespace, workload, podGroup and replica key; it
// returns -1, 0 or +1.
func (k Key) Compare(o Key) int {
	if c := strings.Compare(k.Namespace, o.Namespace); c != 0 {
		return c
	}
	if c := strings.Compare(k.Workload, o.Workload); c != 0 {
		return c
	}
	if c := strings.Compare(k.PodGroup, o.PodGroup); c != 0 {
		return c
	}
	if c := strings.Compare(k.ReplicaKey, o.ReplicaKey); c != 0 {
		return c
	}
	return cmp.Compare(k.Source, o.Source)
}
