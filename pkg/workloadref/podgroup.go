package workloadref

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	splisters "github.com/workload-coscheduling/workload-coscheduling/pkg/generated/listers/schedulerplugins/v1alpha1"
)

// PodGroupGroupVersion is the API of scheduler-plugins' PodGroups (a CRD).
var PodGroupGroupVersion = spv1alpha1.SchemeGroupVersion.String()

// Codes of the Reasons that belong to PodGroup references. PodGroupNotFound
// already means a podGroup missing from a Workload: these name the
// Coscheduling API the PodGroup comes from.
const (
	// PodGroupAPINotServed: the PodGroup CRD is not installed.
	PodGroupAPINotServed = "CoschedulingPodGroupAPINotServed"
	// PodGroupMissing: no PodGroup of the label's name in the namespace.
	PodGroupMissing = "CoschedulingPodGroupNotFound"
	// InvalidPodGroupLabel: the label's value cannot name a PodGroup.
	InvalidPodGroupLabel = "InvalidPodGroupLabel"
)

// podGroupEntry is what the resolver keeps of a PodGroup: one group (no
// name), a gang of minMember, or each pod on its own for a minMember below 2.
func podGroupEntry(pg *spv1alpha1.PodGroup) *entry {
	e := &entry{object: pg, name: pg.Name, minResources: pg.Spec.MinResources}
	var minCount int32
	if pg.Spec.MinMember > 1 {
		minCount = pg.Spec.MinMember
	}
	topology, _ := TopologyOf(pg)
	e.groups = []group{{minCount: minCount, topology: topology}}
	e.permitTimeout, _ = ScheduleTimeoutOf(pg)
	return e
}

// ServePodGroups records that the API server serves PodGroups (their CRD is
// installed); lister, when not nil, reads their informer's store.
func (r *Resolver) ServePodGroups(lister splisters.PodGroupLister) {
	if lister != nil {
		lookup := func(namespace, name string) *entry {
			if pg, err := lister.PodGroups(namespace).Get(name); err == nil {
				return podGroupEntry(pg)
			}
			return nil
		}
		r.podGroups.lookup.Store(&lookup)
	}
	r.podGroups.served.Store(true)
}

// PodGroupsServed reports whether ServePodGroups was called.
func (r *Resolver) PodGroupsServed() bool { return r.podGroups.served.Load() }

// SetPodGroup records a PodGroup the informer added or updated: a change of
// minMember applies to the gang's next attempt.
func (r *Resolver) SetPodGroup(pg *spv1alpha1.PodGroup) {
	r.podGroups.set(gang.WorkloadKey{Namespace: pg.Namespace, Name: pg.Name, Source: gang.SourcePodGroup}, podGroupEntry(pg))
}

// DeletePodGroup forgets a PodGroup the informer deleted.
func (r *Resolver) DeletePodGroup(pg *spv1alpha1.PodGroup) {
	r.podGroups.delete(gang.WorkloadKey{Namespace: pg.Namespace, Name: pg.Name, Source: gang.SourcePodGroup})
}

func (r *Resolver) resolvePodGroup(key gang.Key) (Policy, *Reason) {
	if errs := validation.IsDNS1123Subdomain(key.Workload); len(errs) > 0 {
		return Policy{}, &Reason{Code: InvalidPodGroupLabel, Message: fmt.Sprintf(
			"label %s=%q cannot name a PodGroup: %s", gang.PodGroupLabel, key.Workload, strings.Join(errs, "; "))}
	}
	if !r.podGroups.served.Load() {
		return Policy{}, &Reason{Code: PodGroupAPINotServed, Message: fmt.Sprintf(
			"the API server does not serve %s PodGroups, so PodGroup %q of label %s cannot be read "+
				"(install their CustomResourceDefinition: manifests/podgroup-crd/, or the chart with podGroups.installCRD=true)",
			PodGroupGroupVersion, key.Workload, gang.PodGroupLabel)}
	}
	e := r.podGroups.get(key.WorkloadKey())
	if e == nil {
		return Policy{}, &Reason{Code: PodGroupMissing, Message: fmt.Sprintf(
			"PodGroup %q named by label %s does not exist in namespace %q", key.Workload, gang.PodGroupLabel, key.Namespace)}
	}
	g := e.groups[0]
	return Policy{MinCount: g.minCount, PermitTimeout: e.permitTimeout, Topology: g.topology, MinResources: e.minResources}, nil
}

// ScheduleTimeoutOf reads the PodGroup's spec.scheduleTimeoutSeconds as the
// gang's Permit wait, by the rule of PermitTimeoutOf: 0 when unset or below
// 1, the framework's cap when above it; problem says what was wrong.
func ScheduleTimeoutOf(pg *spv1alpha1.PodGroup) (timeout time.Duration, problem string) {
	seconds := pg.Spec.ScheduleTimeoutSeconds
	switch {
	case seconds == nil:
		return 0, ""
	case *seconds < 1:
		return 0, fmt.Sprintf("spec.scheduleTimeoutSeconds=%d is not a whole number of seconds >= 1: it is ignored", *seconds)
	case int64(*seconds) > int64(MaxPermitWaitingTime/time.Second):
		return MaxPermitWaitingTime, fmt.Sprintf("spec.scheduleTimeoutSeconds=%d exceeds the scheduling framework's %v cap on Permit waits: %v is used",
			*seconds, MaxPermitWaitingTime, MaxPermitWaitingTime)
	}
	return time.Duration(*seconds) * time.Second, ""
}
