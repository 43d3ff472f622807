package workloadcoscheduling

import (
	"context"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// EventsToRegister names the cluster events that can make a pod this plugin
// rejected schedulable. The hints consult the gang index, so an event
// requeues only the members whose gang it can change.
//
// The framework delivers Workload events only when the scheduler's own
// GenericWorkload gate is on. The plugin does not depend on it: its own
// informer handlers (watch) activate the pods concerned whatever the gate.
func (pl *WorkloadCoscheduling) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	events := []fwk.ClusterEventWithHint{
		// A new member can complete its gang's quorum.
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Add}, QueueingHintFn: pl.isSchedulableAfterPodAdded},
		// Capacity freed or added can let a gang whose attempt failed fit;
		// the highest-priority such gangs are tried at once (capacityCanHelp).
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}, QueueingHintFn: pl.isSchedulableAfterPodDeleted},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeAllocatable}, QueueingHintFn: pl.isSchedulableAfterNodeChange},
	}
	// Registering a Workload event makes the framework start a Workload
	// informer, which would never sync where the API is not served.
	if pl.workloadsServed {
		// The missing Workload, or the Workload recreated with the missing
		// podGroup. Workloads are immutable, so updates change nothing.
		events = append(events, fwk.ClusterEventWithHint{
			Event: fwk.ClusterEvent{Resource: fwk.Workload, ActionType: fwk.Add}, QueueingHintFn: isSchedulableAfterWorkloadAdded})
	}
	return events, nil
}

func (pl *WorkloadCoscheduling) isSchedulableAfterPodAdded(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	_, added, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	key, ok := gang.KeyOf(pod)
	if !ok {
		return fwk.QueueSkip, nil
	}
	if addedKey, ok := gang.KeyOf(added); !ok || addedKey != key || gang.Gone(added) || !pl.index.Counted(added) {
		return fwk.QueueSkip, nil
	}
	// Only the member that completes the quorum lets the gang in: requeueing
	// every waiting sibling on each new member costs n² for a gang of n.
	// The index may not have the new member yet; Ready counts it then.
	if policy, reason := pl.resolver.ResolveKey(key); reason == nil && policy.IsGang() &&
		pl.index.Ready(key, added, pl.now()).Present < int(policy.MinCount) {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A member of the pod's gang was added", "pod", klog.KObj(pod), "addedPod", klog.KObj(added), "gang", key)
	return fwk.Queue, nil
}

func (pl *WorkloadCoscheduling) isSchedulableAfterPodDeleted(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	deleted, _, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if deleted.Spec.NodeName == "" || !pl.reallyDeleted(deleted) {
		return fwk.QueueSkip, nil
	}
	// The deleted pod may be a victim the pod's gang waits for; this hint
	// runs after the scheduler's cache let it go, the plugin's handler maybe
	// not yet. When it was the last, the gang's other members are woken too:
	// this hint queues only its own pod, and the handler will find the
	// victim already counted. Not from here: the queue is locked while its
	// hints run, and Activate takes that lock.
	if key, e := pl.index.VictimGone(deleted.UID, pl.now()); e.Activate {
		go pl.activate(logger, key, "the pods it preempted are gone")
	}
	if !pl.capacityCanHelp(pod) {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A bound pod was deleted, freeing capacity", "pod", klog.KObj(pod), "deletedPod", klog.KObj(deleted))
	return fwk.Queue, nil
}

func (pl *WorkloadCoscheduling) isSchedulableAfterNodeChange(logger klog.Logger, pod *v1.Pod, _, _ interface{}) (fwk.QueueingHint, error) {
	if !pl.capacityCanHelp(pod) {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A node was added or grew, adding capacity", "pod", klog.KObj(pod))
	return fwk.Queue, nil
}

// capacityCanHelp reports whether more capacity can let the pod's gang try
// now. Not while the gang lacks members or has an attempt under way. A gang
// that backs off after a failed attempt is woken, through its backoff, only
// if no waiting gang has a higher priority (gang.Index.WakeOnCapacity): the
// capacity goes to the highest-priority gang that waits for it, and a
// rollback's release of its members' nodes does not requeue every member of
// every waiting gang. The hint runs after the scheduler's cache saw the
// change, so the woken gang is tried on a cluster that has the capacity.
func (pl *WorkloadCoscheduling) capacityCanHelp(pod *v1.Pod) bool {
	key, ok := gang.KeyOf(pod)
	if !ok {
		return true
	}
	return pl.index.WakeOnCapacity(key, pl.now())
}

// reallyDeleted reports whether a pod of a Pod/Delete event is gone from the
// API: the scheduler sends the same event when it forgets an assumed pod
// whose reservation was released (a rollback, a failed binding), which
// frees nothing that was not free before the attempt. Two gangs that each
// woke on the other's released reservations would spin without a backoff.
// The answer is cached for the event's pod: the queue asks the hint of
// every waiting pod about the same event.
func (pl *WorkloadCoscheduling) reallyDeleted(pod *v1.Pod) bool {
	if pl.pods == nil {
		return true
	}
	if last := pl.lastDeleted.Load(); last != nil && last.pod == pod {
		return last.gone
	}
	obj, exists, err := pl.pods.GetByKey(pod.Namespace + "/" + pod.Name)
	gone := err == nil && (!exists || obj.(*v1.Pod).UID != pod.UID)
	pl.lastDeleted.Store(&deletion{pod: pod, gone: gone})
	return gone
}

// deletion is the last answer of reallyDeleted.
type deletion struct {
	pod  *v1.Pod
	gone bool
}

func isSchedulableAfterWorkloadAdded(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	_, added, err := util.As[*schedulingv1alpha1.Workload](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if ref := pod.Spec.WorkloadRef; ref == nil || pod.Namespace != added.Namespace || ref.Name != added.Name {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("The pod's Workload was added", "pod", klog.KObj(pod), "workload", klog.KObj(added))
	return fwk.Queue, nil
}
