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
		// Capacity freed or added can let a gang whose attempt failed fit,
		// once it no longer backs off (the backoff's end wakes it anyway).
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
	logger.V(5).Info("A member of the pod's gang was added", "pod", klog.KObj(pod), "addedPod", klog.KObj(added), "gang", key)
	return fwk.Queue, nil
}

func (pl *WorkloadCoscheduling) isSchedulableAfterPodDeleted(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	deleted, _, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if deleted.Spec.NodeName == "" {
		return fwk.QueueSkip, nil
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
// again now: not while the gang lacks members or backs off (its quorum or
// the backoff's end wakes it), nor while its attempt is under way. A member
// of a rollback is rejected with its node still assumed; the release of
// that node is such an event, and must not requeue every member of every
// waiting gang.
func (pl *WorkloadCoscheduling) capacityCanHelp(pod *v1.Pod) bool {
	key, ok := gang.KeyOf(pod)
	if !ok {
		return true
	}
	phase, known := pl.index.Phase(key, pl.now())
	if !known {
		return true
	}
	switch phase {
	case gang.PhaseAssembling, gang.PhaseBackingOff, gang.PhaseAttempting:
		return false
	}
	return true
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
