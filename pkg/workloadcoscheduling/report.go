package workloadcoscheduling

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// Reasons of the events the plugin records. The resolver's reasons (a
// Workload or podGroup missing, an invalid reference) are the Codes of
// workloadref.Reason.
const (
	// ReasonWaitingForGangMembers: the gang has fewer than minCount live
	// members.
	ReasonWaitingForGangMembers = "WaitingForGangMembers"
	// ReasonGangBackoff: the gang waits after a failed attempt.
	ReasonGangBackoff = "GangBackoff"
	// ReasonGangAdmitted: an attempt reached its quorum; members bind.
	ReasonGangAdmitted = "GangAdmitted"
	// ReasonGangRolledBack: an attempt failed; its reservations were
	// released.
	ReasonGangRolledBack = "GangRolledBack"
	// ReasonGangPreempting: the gang evicts lower-priority pods to fit,
	// on its Workload.
	ReasonGangPreempting = "GangPreempting"
	// ReasonGangPreempted: the gang was evicted whole by a higher-priority
	// gang or pod, on its Workload.
	ReasonGangPreempted = "GangPreempted"
	// ReasonWaitingForVictims: the gang waits for the pods it preempted to
	// terminate.
	ReasonWaitingForVictims = "WaitingForPreemptionVictims"
	// ReasonInvalidPermitWaitingTime: the Workload's Permit timeout
	// annotation is ignored or clamped.
	ReasonInvalidPermitWaitingTime = "InvalidPermitWaitingTime"
	// ReasonTopologyPlaced: the domain an attempt of the gang places its
	// members in, or why a preference was not met; on the Workload.
	ReasonTopologyPlaced = "GangTopologyPlaced"
	// ReasonTopologyUnfit: no domain of the required key can hold the gang;
	// on the Workload.
	ReasonTopologyUnfit = "GangTopologyUnfit"
	// ReasonInvalidTopology: a topology annotation of the Workload is
	// ignored.
	ReasonInvalidTopology = "InvalidTopology"
	// ReasonReferenceIgnored: the pod references gangs of more than one
	// API; it belongs to the first of spec.workloadRef, the portable
	// annotations and the PodGroup label, and the others are ignored.
	ReasonReferenceIgnored = "GangReferenceIgnored"
)

// tellIgnoredReference tells the user, once per pod, that a pod with more
// than one kind of reference belongs to the gang of the strongest only.
func (pl *WorkloadCoscheduling) tellIgnoredReference(pod *v1.Pod, key gang.Key) {
	ignored := gang.IgnoredReference(pod)
	if ignored == "" {
		return
	}
	if _, told := pl.ignoredTold.LoadOrStore(pod.UID, struct{}{}); told {
		return
	}
	pl.sched.EventRecorder().Eventf(pod, nil, v1.EventTypeWarning, ReasonReferenceIgnored, "Scheduling",
		"the pod references more than one gang: it belongs to gang %s; ignored: %s", key, ignored)
}

// tellWaiting records an event on the pod, once per change of reason, so a
// user reads with `kubectl describe pod` why it is pending. While the
// scheduler starts, the queue judges pods before the plugin's handlers have
// delivered every Workload and member, and the reason may be wrong; and a
// standby's queue judges them too (leader.go). Such a pod is remembered
// instead, and judged again once the handlers have synced and the replica
// leads.
func (pl *WorkloadCoscheduling) tellWaiting(pod *v1.Pod, key gang.Key, eventType, reason, msg string) {
	if pl.startup.hold(pod) {
		return
	}
	if pl.index.SetReason(key, pod.UID, msg) {
		pl.sched.EventRecorder().Eventf(pod, nil, eventType, reason, "Scheduling", msg)
	}
}

// tellWorkload records an event on the gang's Workload: one per attempt of
// the gang (admitted, or rolled back with the reason), however many members
// it has, so `kubectl describe workload` reads the gang's history.
func (pl *WorkloadCoscheduling) tellWorkload(key gang.Key, eventType, reason, note string) {
	if w := pl.resolver.Workload(key); w != nil {
		pl.sched.EventRecorder().Eventf(w, nil, eventType, reason, "Scheduling", note)
	}
}

// tellGangWaiting reports why a whole gang waits (too few members, or a
// backoff) once per change of that reason for the gang, not per member: on
// the member that saw it first and on the Workload. A gang of 1000 costs two
// events per change, and `kubectl gang describe` shows the live counts.
//
// A gang's members seldom arrive at once: the first ones wait for the rest
// for milliseconds. That is not worth two API writes per gang, so a gang
// that waits for members is reported only if it still does after
// assemblyGrace, with its count then.
func (pl *WorkloadCoscheduling) tellGangWaiting(pod *v1.Pod, key gang.Key, reason, msg string) {
	if pl.startup.hold(pod) {
		return
	}
	if !pl.index.SetGangReason(key, reason) {
		return
	}
	if reason != ReasonWaitingForGangMembers || pl.assemblyGrace == 0 {
		pl.index.Reported(key)
		pl.sched.EventRecorder().Eventf(pod, nil, v1.EventTypeNormal, reason, "Scheduling", msg)
		pl.tellWorkload(key, v1.EventTypeNormal, reason, msg)
		return
	}
	time.AfterFunc(pl.assemblyGrace, func() {
		policy, problem := pl.resolver.ResolveKey(key)
		present := pl.index.Counts(key).Present
		if problem != nil || !policy.IsGang() || present >= int(policy.MinCount) {
			return
		}
		msg := fmt.Sprintf("waiting for the members of gang %s: %d/%d present", key, present, policy.MinCount)
		pl.index.Reported(key)
		pl.sched.EventRecorder().Eventf(pod, nil, v1.EventTypeNormal, reason, "Scheduling", msg)
		pl.tellWorkload(key, v1.EventTypeNormal, reason, msg)
	})
}

// assemblyGrace is how long a gang may wait for its members before the
// user is told (see tellGangWaiting).
const assemblyGrace = time.Second

// startupReports holds the pods turned away before the plugin's handlers had
// synced, or while the replica did not lead.
type startupReports struct {
	mu sync.Mutex
	// synced: the handlers have synced and the replica leads.
	synced bool
	pods   map[string]*v1.Pod
}

// forget drops a deleted pod held for later.
func (r *startupReports) forget(pod *v1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pods, pod.Namespace+"/"+pod.Name)
}

// hold remembers the pod and reports true until the handlers have synced
// and the replica leads; afterwards it reports false.
func (r *startupReports) hold(pod *v1.Pod) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.synced || r.pods == nil {
		return false
	}
	r.pods[pod.Namespace+"/"+pod.Name] = pod
	return true
}

// reportAfterSync waits for the plugin's handlers to sync and the replica to
// lead, then has the queue judge again, with a full index, the pods turned
// away meanwhile, and tells the user of the Workloads' and PodGroups'
// invalid annotations, which a standby kept to itself.
func (pl *WorkloadCoscheduling) reportAfterSync(ctx context.Context) {
	synced := make([]cache.InformerSynced, len(pl.handlers))
	for i, h := range pl.handlers {
		synced[i] = h.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-pl.leading:
	}
	for _, obj := range pl.resolver.Objects() {
		switch o := obj.(type) {
		case *spv1alpha1.PodGroup:
			pl.checkPodGroup(o)
		case workloadObject:
			pl.checkAnnotations(o)
		}
	}
	pl.startup.mu.Lock()
	pl.startup.synced = true
	pods := pl.startup.pods
	pl.startup.pods = nil
	pl.startup.mu.Unlock()
	if len(pods) > 0 {
		logger := klog.FromContext(ctx)
		logger.V(3).Info("Judging again the pods turned away while the plugin's informers synced", "pods", len(pods))
		pl.sched.Activate(logger, pods)
	}
}
