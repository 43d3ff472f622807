// Package workloadref resolves a pod's spec.workloadRef to the gang it belongs
// to and the scheduling policy of its podGroup, from the built-in
// scheduling.k8s.io/v1alpha1 Workload API.
package workloadref

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	schedulinglisters "k8s.io/client-go/listers/scheduling/v1alpha1"
)

// GroupVersion is the API that serves Workloads.
const GroupVersion = "scheduling.k8s.io/v1alpha1"

// PermitWaitingTimeAnnotation on a Workload overrides the plugin's
// permitWaitingTimeSeconds for the gangs of that Workload.
const PermitWaitingTimeAnnotation = "workload-coscheduling.io/permit-waiting-time-seconds"

// MaxPermitWaitingTime is the scheduling framework's cap on any Permit wait.
const MaxPermitWaitingTime = 15 * time.Minute

// Policy is how the pods of one podGroup are scheduled.
type Policy struct {
	// MinCount is the gang's quorum; 0 means the basic policy: the podGroup
	// only groups its pods and each schedules on its own.
	MinCount int32
	// PermitTimeout is the Workload's override of how long members wait at
	// Permit; 0 when it has none (or an invalid one).
	PermitTimeout time.Duration
}

// IsGang reports whether the pods are placed all-or-nothing.
func (p Policy) IsGang() bool { return p.MinCount > 0 }

// Reason says why a pod's reference cannot be resolved yet. The pod must wait
// until the reason goes away (a Workload or podGroup is created); it is a
// state of the cluster, not a failure of the scheduler.
type Reason struct {
	// Code is a short CamelCase word for events: WorkloadAPINotServed,
	// WorkloadNotFound or PodGroupNotFound.
	Code string
	// Message names what is missing.
	Message string
}

func (r *Reason) Error() string { return r.Message }

// workloadKey names a Workload.
type workloadKey struct{ namespace, name string }

// Resolver keeps the Workloads an informer delivers, keyed by namespace and
// name, so that resolving a pod on the scheduling hot path is a map lookup
// that allocates nothing.
type Resolver struct {
	served    bool
	mu        sync.RWMutex
	workloads map[workloadKey]*schedulingv1alpha1.Workload
	// lister reads the informer's store, which is synced before the
	// scheduler starts and written before any handler runs: it answers for a
	// Workload the handler has not delivered yet (a scheduler that just
	// started), so no pod is told its Workload is missing when it is not.
	lister schedulinglisters.WorkloadLister
}

// New returns a resolver. When the API server does not serve GroupVersion
// (served is false), every reference waits for it. lister, when not nil, is
// asked for Workloads the resolver has not been given yet.
func New(served bool, lister schedulinglisters.WorkloadLister) *Resolver {
	return &Resolver{served: served, workloads: map[workloadKey]*schedulingv1alpha1.Workload{}, lister: lister}
}

// SetWorkload records a Workload the informer added or updated.
func (r *Resolver) SetWorkload(w *schedulingv1alpha1.Workload) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.workloads[workloadKey{w.Namespace, w.Name}] = w
}

// DeleteWorkload forgets a Workload the informer deleted.
func (r *Resolver) DeleteWorkload(w *schedulingv1alpha1.Workload) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.workloads, workloadKey{w.Namespace, w.Name})
}

// Workload returns the Workload namespace/name, from what the resolver was
// given or else the lister, or nil.
func (r *Resolver) Workload(namespace, name string) *schedulingv1alpha1.Workload {
	r.mu.RLock()
	w := r.workloads[workloadKey{namespace, name}]
	r.mu.RUnlock()
	if w == nil && r.lister != nil {
		w, _ = r.lister.Workloads(namespace).Get(name)
	}
	return w
}

// Resolve returns the policy of the podGroup the pod references, or the
// Reason the pod must wait.
func (r *Resolver) Resolve(pod *v1.Pod) (Policy, *Reason) {
	ref := pod.Spec.WorkloadRef
	return r.ResolveGroup(pod.Namespace, ref.Name, ref.PodGroup)
}

// ResolveGroup returns the policy of the podGroup of the Workload
// namespace/name, or the Reason its pods must wait.
func (r *Resolver) ResolveGroup(namespace, name, podGroup string) (Policy, *Reason) {
	if !r.served {
		return Policy{}, &Reason{Code: "WorkloadAPINotServed", Message: fmt.Sprintf(
			"the API server does not serve %s Workloads, so Workload %q of spec.workloadRef cannot be read "+
				"(the API server needs --feature-gates=GenericWorkload=true and --runtime-config=%s=true)",
			GroupVersion, name, GroupVersion)}
	}
	r.mu.RLock()
	workload, ok := r.workloads[workloadKey{namespace, name}]
	r.mu.RUnlock()
	if !ok && r.lister != nil {
		if w, err := r.lister.Workloads(namespace).Get(name); err == nil {
			workload, ok = w, true
		}
	}
	if !ok {
		return Policy{}, &Reason{Code: "WorkloadNotFound", Message: fmt.Sprintf(
			"Workload %q referenced by spec.workloadRef does not exist in namespace %q", name, namespace)}
	}
	policy, reason := PolicyOf(workload, podGroup)
	if reason == nil {
		policy.PermitTimeout, _ = PermitTimeoutOf(workload)
	}
	return policy, reason
}

// PermitTimeoutOf reads the Workload's PermitWaitingTimeAnnotation. It returns
// 0 when there is none or it is invalid, and clamps a value above the
// framework's cap to the cap; in both cases problem says what was wrong, for
// the user.
func PermitTimeoutOf(workload *schedulingv1alpha1.Workload) (timeout time.Duration, problem string) {
	value, ok := workload.Annotations[PermitWaitingTimeAnnotation]
	if !ok {
		return 0, ""
	}
	seconds, err := strconv.ParseInt(value, 10, 64)
	if err != nil || seconds < 1 {
		return 0, fmt.Sprintf("annotation %s=%q is not a whole number of seconds >= 1: it is ignored", PermitWaitingTimeAnnotation, value)
	}
	if seconds > int64(MaxPermitWaitingTime/time.Second) {
		return MaxPermitWaitingTime, fmt.Sprintf("annotation %s=%q exceeds the scheduling framework's %v cap on Permit waits: %v is used",
			PermitWaitingTimeAnnotation, value, MaxPermitWaitingTime, MaxPermitWaitingTime)
	}
	return time.Duration(seconds) * time.Second, ""
}

// PolicyOf returns the policy of the named podGroup of a Workload, or a
// Reason naming the podGroup when the Workload has none of that name.
func PolicyOf(workload *schedulingv1alpha1.Workload, podGroup string) (Policy, *Reason) {
	for i := range workload.Spec.PodGroups {
		g := &workload.Spec.PodGroups[i]
		if g.Name != podGroup {
			continue
		}
		if g.Policy.Gang != nil {
			return Policy{MinCount: g.Policy.Gang.MinCount}, nil
		}
		return Policy{}, nil
	}
	names := make([]string, len(workload.Spec.PodGroups))
	for i := range workload.Spec.PodGroups {
		names[i] = workload.Spec.PodGroups[i].Name
	}
	return Policy{}, &Reason{Code: "PodGroupNotFound", Message: fmt.Sprintf(
		"Workload %q has no podGroup %q referenced by spec.workloadRef (its podGroups: %s)",
		workload.Name, podGroup, strings.Join(names, ", "))}
}
