// Package gang keeps the state of gangs: which pods belong to which gang, how
// far each member has come (present, reserved at Permit, bound, gone), and
// the state machine of each gang's attempt (state.go). It has no client
// code: the plugin feeds it from informers and scheduling callbacks, and
// carries out the Effects each transition returns. On the scheduling hot
// path every operation is a map lookup under a short lock.
package gang

import (
	"strings"

	v1 "k8s.io/api/core/v1"
)

// Key identifies one gang: the pods of a Workload's podGroup that share a
// podGroupReplicaKey. Different replica keys are independent gangs of the
// same minCount. Portable tells a portable Workload (referenced by
// annotations) from a built-in one of the same name.
type Key struct {
	Namespace  string `json:"namespace"`
	Workload   string `json:"workload"`
	PodGroup   string `json:"podGroup"`
	ReplicaKey string `json:"replicaKey,omitempty"`
	Portable   bool   `json:"portable,omitempty"`
}

// KeyOf returns the gang key of a pod that references a Workload, by
// spec.workloadRef or else by the portable annotations, and false for a pod
// that references none. The annotations' values are not checked here: an
// invalid reference is a gang member that must wait, with the reason.
func KeyOf(pod *v1.Pod) (Key, bool) {
	if ref := pod.Spec.WorkloadRef; ref != nil {
		return Key{Namespace: pod.Namespace, Workload: ref.Name, PodGroup: ref.PodGroup, ReplicaKey: ref.PodGroupReplicaKey}, true
	}
	workload, hasWorkload := pod.Annotations[WorkloadAnnotation]
	podGroup, hasPodGroup := pod.Annotations[PodGroupAnnotation]
	if !hasWorkload && !hasPodGroup {
		return Key{}, false
	}
	return Key{Namespace: pod.Namespace, Workload: workload, PodGroup: podGroup, ReplicaKey: pod.Annotations[ReplicaKeyAnnotation], Portable: true}, true
}

// Workload names the Workload the gang belongs to.
func (k Key) WorkloadKey() WorkloadKey {
	return WorkloadKey{Namespace: k.Namespace, Name: k.Workload, Portable: k.Portable}
}

// String renders the key as namespace/workload/podGroup, with the replica key
// in brackets when there is one, and "portable:" first for a portable
// Workload.
func (k Key) String() string {
	s := k.Namespace + "/" + k.Workload + "/" + k.PodGroup
	if k.ReplicaKey != "" {
		s += "[" + k.ReplicaKey + "]"
	}
	if k.Portable {
		s = "portable:" + s
	}
	return s
}

// StoreKey is how the pod informer's store indexes the members of a gang
// that one scheduler profile places: the key and the schedulerName.
func StoreKey(key Key, schedulerName string) string {
	return key.String() + "@" + schedulerName
}

// WorkloadKey names a Workload object, built-in or portable.
type WorkloadKey struct {
	Namespace string
	Name      string
	Portable  bool
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
	switch {
	case k.Portable == o.Portable:
		return 0
	case o.Portable:
		return -1
	}
	return 1
}
