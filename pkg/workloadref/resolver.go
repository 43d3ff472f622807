// Package workloadref resolves a pod's reference to a Workload — its
// spec.workloadRef to a built-in scheduling.k8s.io/v1alpha1 Workload, or its
// annotations to a portable one (apis/scheduling/v1alpha1) — to the
// scheduling policy of its podGroup, or to the reason it must wait.
package workloadref

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	schedulinglisters "k8s.io/client-go/listers/scheduling/v1alpha1"

	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	wcslisters "github.com/workload-coscheduling/workload-coscheduling/pkg/generated/listers/scheduling/v1alpha1"
)

// GroupVersion is the API that serves Workloads.
const GroupVersion = "scheduling.k8s.io/v1alpha1"

// PermitWaitingTimeAnnotation is gang.PermitWaitingTimeAnnotation, named here
// for the resolver's callers.
const PermitWaitingTimeAnnotation = gang.PermitWaitingTimeAnnotation

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
	// Topology is where the gang's members land together; nil for
	// anywhere. Shared by the gangs of the podGroup: never modified.
	Topology *Topology
	// MinResources is the least a PodGroup's gang needs in all (its
	// spec.minResources), or nil. Shared: never modified.
	MinResources v1.ResourceList
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

// Codes of the Reasons that belong to portable references.
const (
	// PortableAPINotServed: the CRD of portable Workloads is not installed.
	PortableAPINotServed = "PortableWorkloadAPINotServed"
	// InvalidReference: the pod's annotations do not name a Workload and a
	// podGroup validly.
	InvalidReference = "InvalidWorkloadReference"
)

// PortableGroupVersion is the API of portable Workloads (a CRD).
var PortableGroupVersion = wcsv1alpha1.SchemeGroupVersion.String()

// entry is what the resolver keeps of a Workload, built-in or portable: the
// policy of each podGroup, the Permit timeout its annotation sets, and the
// object itself for events.
type entry struct {
	object        runtime.Object
	name          string
	groups        []group
	permitTimeout time.Duration
	minResources  v1.ResourceList
}

type group struct {
	name     string
	minCount int32
	topology *Topology
}

func nativeEntry(w *schedulingv1alpha1.Workload) *entry {
	return newEntry(w, &w.Spec)
}

func portableEntry(w *wcsv1alpha1.Workload) *entry {
	spec := w.Spec.BuiltIn()
	e := newEntry(w, &spec)
	// The built-in 1.35 shape has no schedulingConstraints.
	for i := range w.Spec.PodGroups {
		if t := topologyOfGroup(&w.Spec.PodGroups[i]); t != nil {
			e.groups[i].topology = t
		}
	}
	return e
}

func newEntry(w workloadObject, spec *schedulingv1alpha1.WorkloadSpec) *entry {
	e := &entry{object: w, name: w.GetName()}
	topology, _ := TopologyOf(w)
	for _, g := range spec.PodGroups {
		var minCount int32
		if g.Policy.Gang != nil {
			minCount = g.Policy.Gang.MinCount
		}
		e.groups = append(e.groups, group{name: g.Name, minCount: minCount, topology: topology})
	}
	e.permitTimeout, _ = PermitTimeoutOf(w)
	return e
}

// workloadObject is a Workload, built-in or portable.
type workloadObject interface {
	runtime.Object
	metav1.Object
}

// source is the Workloads of one API, as its informer delivers them.
type source struct {
	served    atomic.Bool
	mu        sync.RWMutex
	workloads map[gang.WorkloadKey]*entry
	// lookup reads the informer's store, which is synced before the
	// scheduler starts and written before any handler runs: it answers for a
	// Workload the handler has not delivered yet (a scheduler that just
	// started), so no pod is told its Workload is missing when it is not.
	lookup atomic.Pointer[func(namespace, name string) *entry]
}

func (s *source) set(key gang.WorkloadKey, e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workloads[key] = e
}

func (s *source) delete(key gang.WorkloadKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.workloads, key)
}

func (s *source) get(key gang.WorkloadKey) *entry {
	s.mu.RLock()
	e := s.workloads[key]
	s.mu.RUnlock()
	if e == nil {
		if lookup := s.lookup.Load(); lookup != nil {
			e = (*lookup)(key.Namespace, key.Name)
		}
	}
	return e
}

// Resolver keeps the Workloads the informers deliver, built-in and portable,
// and the PodGroups, so that resolving a pod on the scheduling hot path is a
// map lookup that allocates nothing. All resolve to the same Policy; the
// gang key says which kind a pod references.
type Resolver struct {
	native, portable, podGroups source
}

// sourceOf is where the resolver keeps the objects of a gang's source.
func (r *Resolver) sourceOf(s gang.Source) *source {
	switch s {
	case gang.SourcePortable:
		return &r.portable
	case gang.SourcePodGroup:
		return &r.podGroups
	}
	return &r.native
}

// New returns a resolver. When the API server does not serve the built-in
// GroupVersion (served is false), every spec.workloadRef waits for it. lister,
// when not nil, is asked for Workloads the resolver has not been given yet.
// Portable Workloads wait until ServePortable.
func New(served bool, lister schedulinglisters.WorkloadLister) *Resolver {
	r := &Resolver{}
	r.native.workloads = map[gang.WorkloadKey]*entry{}
	r.portable.workloads = map[gang.WorkloadKey]*entry{}
	r.podGroups.workloads = map[gang.WorkloadKey]*entry{}
	r.native.served.Store(served)
	if lister != nil {
		lookup := func(namespace, name string) *entry {
			if w, err := lister.Workloads(namespace).Get(name); err == nil {
				return nativeEntry(w)
			}
			return nil
		}
		r.native.lookup.Store(&lookup)
	}
	return r
}

// ServePortable records that the API server serves portable Workloads (their
// CRD is installed); lister, when not nil, reads their informer's store.
func (r *Resolver) ServePortable(lister wcslisters.WorkloadLister) {
	if lister != nil {
		lookup := func(namespace, name string) *entry {
			if w, err := lister.Workloads(namespace).Get(name); err == nil {
				return portableEntry(w)
			}
			return nil
		}
		r.portable.lookup.Store(&lookup)
	}
	r.portable.served.Store(true)
}

// PortableServed reports whether ServePortable was called.
func (r *Resolver) PortableServed() bool { return r.portable.served.Load() }

// SetWorkload records a built-in Workload the informer added or updated.
func (r *Resolver) SetWorkload(w *schedulingv1alpha1.Workload) {
	r.native.set(gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name}, nativeEntry(w))
}

// DeleteWorkload forgets a built-in Workload the informer deleted.
func (r *Resolver) DeleteWorkload(w *schedulingv1alpha1.Workload) {
	r.native.delete(gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name})
}

// SetPortableWorkload records a portable Workload the informer added or
// updated.
func (r *Resolver) SetPortableWorkload(w *wcsv1alpha1.Workload) {
	r.portable.set(gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name, Source: gang.SourcePortable}, portableEntry(w))
}

// DeletePortableWorkload forgets a portable Workload the informer deleted.
func (r *Resolver) DeletePortableWorkload(w *wcsv1alpha1.Workload) {
	r.portable.delete(gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name, Source: gang.SourcePortable})
}

// Workload returns the Workload of the gang, built-in or portable, as an
// object to report events on, or nil.
func (r *Resolver) Workload(key gang.Key) runtime.Object {
	if e := r.sourceOf(key.Source).get(key.WorkloadKey()); e != nil {
		return e.object
	}
	return nil
}

// Objects returns the Workloads and PodGroups the informers delivered.
func (r *Resolver) Objects() []runtime.Object {
	var objs []runtime.Object
	for _, src := range []*source{&r.native, &r.portable, &r.podGroups} {
		src.mu.RLock()
		for _, e := range src.workloads {
			objs = append(objs, e.object)
		}
		src.mu.RUnlock()
	}
	return objs
}

// Resolve returns the policy of the podGroup the pod references, or the
// Reason the pod must wait.
func (r *Resolver) Resolve(pod *v1.Pod) (Policy, *Reason) {
	key, _ := gang.KeyOf(pod)
	return r.ResolveKey(key)
}

// ResolveKey returns the policy of the gang's podGroup, or the Reason its
// pods must wait.
func (r *Resolver) ResolveKey(key gang.Key) (Policy, *Reason) {
	switch key.Source {
	case gang.SourcePodGroup:
		return r.resolvePodGroup(key)
	case gang.SourcePortable:
		if reason := checkAnnotations(key); reason != nil {
			return Policy{}, reason
		}
	}
	src := r.sourceOf(key.Source)
	if !src.served.Load() {
		if key.Source == gang.SourcePortable {
			return Policy{}, &Reason{Code: PortableAPINotServed, Message: fmt.Sprintf(
				"the API server does not serve %s Workloads, so Workload %q of annotation %s cannot be read "+
					"(install their CustomResourceDefinition: kubectl apply -f manifests/crds/)",
				PortableGroupVersion, key.Workload, gang.WorkloadAnnotation)}
		}
		return Policy{}, &Reason{Code: "WorkloadAPINotServed", Message: fmt.Sprintf(
			"the API server does not serve %s Workloads, so Workload %q of spec.workloadRef cannot be read "+
				"(the API server needs --feature-gates=GenericWorkload=true and --runtime-config=%s=true)",
			GroupVersion, key.Workload, GroupVersion)}
	}
	e := src.get(key.WorkloadKey())
	if e == nil {
		return Policy{}, &Reason{Code: "WorkloadNotFound", Message: fmt.Sprintf(
			"Workload %q referenced by %s does not exist in namespace %q", key.Workload, referrer(key), key.Namespace)}
	}
	for _, g := range e.groups {
		if g.name == key.PodGroup {
			return Policy{MinCount: g.minCount, PermitTimeout: e.permitTimeout, Topology: g.topology}, nil
		}
	}
	names := make([]string, len(e.groups))
	for i, g := range e.groups {
		names[i] = g.name
	}
	return Policy{}, &Reason{Code: "PodGroupNotFound", Message: fmt.Sprintf(
		"Workload %q has no podGroup %q referenced by %s (its podGroups: %s)",
		e.name, key.PodGroup, referrer(key), strings.Join(names, ", "))}
}

func referrer(key gang.Key) string {
	if key.Source == gang.SourcePortable {
		return "annotation " + gang.WorkloadAnnotation
	}
	return "spec.workloadRef"
}

// checkAnnotations validates a portable reference as the API server
// validates spec.workloadRef: a Workload name that is a DNS subdomain, a
// podGroup and a replica key that are DNS labels.
func checkAnnotations(key gang.Key) *Reason {
	var problems []string
	check := func(annotation, value string, required bool, validate func(string) []string) {
		if value == "" {
			if required {
				problems = append(problems, fmt.Sprintf("annotation %s is missing or empty", annotation))
			}
			return
		}
		if errs := validate(value); len(errs) > 0 {
			problems = append(problems, fmt.Sprintf("annotation %s=%q: %s", annotation, value, strings.Join(errs, "; ")))
		}
	}
	check(gang.WorkloadAnnotation, key.Workload, true, validation.IsDNS1123Subdomain)
	check(gang.PodGroupAnnotation, key.PodGroup, true, validation.IsDNS1123Label)
	check(gang.ReplicaKeyAnnotation, key.ReplicaKey, false, validation.IsDNS1123Label)
	if len(problems) == 0 {
		return nil
	}
	return &Reason{Code: InvalidReference, Message: "invalid reference to a portable Workload: " + strings.Join(problems, "; ")}
}

// PermitTimeoutOf reads the Workload's PermitWaitingTimeAnnotation. It returns
// 0 when there is none or it is invalid, and clamps a value above the
// framework's cap to the cap; in both cases problem says what was wrong, for
// the user.
func PermitTimeoutOf(workload metav1.Object) (timeout time.Duration, problem string) {
	value, ok := workload.GetAnnotations()[PermitWaitingTimeAnnotation]
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
