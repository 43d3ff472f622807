// Package gang keeps the state of gangs: which pods belong to which gang and
// how far each member has come (present, reserved at Permit, bound). It has
// no client code: the plugin feeds it from informers and scheduling
// callbacks, and reads it on the scheduling hot path, where every operation
// is a map lookup under a short lock.
package gang

import (
	"strings"

	v1 "k8s.io/api/core/v1"
)

// Key identifies one gang: the pods of a Workload's podGroup that share a
// podGroupReplicaKey. Different replica keys are independent gangs of the
// same minCount.
type Key struct {
	Namespace  string `json:"namespace"`
	Workload   string `json:"workload"`
	PodGroup   string `json:"podGroup"`
	ReplicaKey string `json:"replicaKey,omitempty"`
}

// KeyOf returns the gang key of a pod that has spec.workloadRef, and false for
// a pod without one.
func KeyOf(pod *v1.Pod) (Key, bool) {
	ref := pod.Spec.WorkloadRef
	if ref == nil {
		return Key{}, false
	}
	return Key{Namespace: pod.Namespace, Workload: ref.Name, PodGroup: ref.PodGroup, ReplicaKey: ref.PodGroupReplicaKey}, true
}

// Workload names the Workload the gang belongs to.
func (k Key) WorkloadKey() WorkloadKey {
	return WorkloadKey{Namespace: k.Namespace, Name: k.Workload}
}

// String renders the key as namespace/workload/podGroup, with the replica key
// in brackets when there is one.
func (k Key) String() string {
	s := k.Namespace + "/" + k.Workload + "/" + k.PodGroup
	if k.ReplicaKey != "" {
		s += "[" + k.ReplicaKey + "]"
	}
	return s
}

// WorkloadKey names a Workload object.
type WorkloadKey struct {
	Namespace string
	Name      string
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
	return strings.Compare(k.ReplicaKey, o.ReplicaKey)
}
