package workloadcoscheduling

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// EventsToRegister names the cluster events that can make a pod this plugin
// rejected schedulable. The hints match only the pods concerned.
//
// The framework delivers Workload events only when the scheduler's own
// GenericWorkload gate is on. The plugin does not depend on it: its own
// informer handlers (watch) activate the pods concerned whatever the gate.
func (pl *WorkloadCoscheduling) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	events := []fwk.ClusterEventWithHint{
		// A new member can complete its gang's quorum.
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Add}, QueueingHintFn: isSchedulableAfterPodAdded},
		// A member rejected at Permit can fit once capacity is freed or added.
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}, QueueingHintFn: isSchedulableAfterPodDeleted},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeAllocatable}},
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

func isSchedulableAfterPodAdded(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	_, added, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	key, ok := gang.KeyOf(pod)
	if !ok {
		return fwk.QueueSkip, nil
	}
	if addedKey, ok := gang.KeyOf(added); !ok || addedKey != key {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A member of the pod's gang was added", "pod", klog.KObj(pod), "addedPod", klog.KObj(added), "gang", key)
	return fwk.Queue, nil
}

func isSchedulableAfterPodDeleted(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	deleted, _, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if deleted.Spec.NodeName == "" {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A bound pod was deleted, freeing capacity", "pod", klog.KObj(pod), "deletedPod", klog.KObj(deleted))
	return fwk.Queue, nil
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

// watch feeds the gang index from the scheduler's shared informers and wakes
// the pods an event concerns. Waking goes through the index, after it was
// updated, so a pod never misses the change that lets it in: the queue runs
// PreEnqueue again on Activate, and reads the updated index.
func (pl *WorkloadCoscheduling) watch(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	podHandler := cache.FilteringResourceEventHandler{
		FilterFunc: func(obj interface{}) bool {
			pod := podFrom(obj)
			if pod == nil {
				return false
			}
			_, member := gang.KeyOf(pod)
			return member
		},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj interface{}) { pl.podAdded(logger, obj.(*v1.Pod)) },
			UpdateFunc: func(_, obj interface{}) { pl.podUpdated(logger, obj.(*v1.Pod)) },
			DeleteFunc: func(obj interface{}) { pl.podDeleted(logger, podFrom(obj)) },
		},
	}
	registration, err := pl.handle.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(podHandler)
	if err != nil {
		return fmt.Errorf("%s: watching pods: %w", Name, err)
	}
	pl.handlers = append(pl.handlers, registration)
	nodeHandler := cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj interface{}) {
			if node := nodeFrom(obj); node != nil {
				pl.nodeDeleted(logger, node)
			}
		},
	}
	registration, err = pl.handle.SharedInformerFactory().Core().V1().Nodes().Informer().AddEventHandler(nodeHandler)
	if err != nil {
		return fmt.Errorf("%s: watching nodes: %w", Name, err)
	}
	pl.handlers = append(pl.handlers, registration)
	if !pl.workloadsServed {
		return nil
	}
	workloadHandler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) { pl.workloadAdded(logger, obj.(*schedulingv1alpha1.Workload)) },
		UpdateFunc: func(oldObj, newObj interface{}) {
			old, w := oldObj.(*schedulingv1alpha1.Workload), newObj.(*schedulingv1alpha1.Workload)
			pl.resolver.SetWorkload(w)
			if old.Annotations[workloadref.PermitWaitingTimeAnnotation] != w.Annotations[workloadref.PermitWaitingTimeAnnotation] {
				pl.checkAnnotations(w)
			}
		},
		DeleteFunc: func(obj interface{}) {
			if w := workloadFrom(obj); w != nil {
				pl.resolver.DeleteWorkload(w)
				pl.workloadDeleted(logger, w, false)
			}
		},
	}
	registration, err = pl.handle.SharedInformerFactory().Scheduling().V1alpha1().Workloads().Informer().AddEventHandler(workloadHandler)
	if err != nil {
		return fmt.Errorf("%s: watching workloads: %w", Name, err)
	}
	pl.handlers = append(pl.handlers, registration)
	return nil
}

func (pl *WorkloadCoscheduling) podAdded(logger klog.Logger, pod *v1.Pod) {
	key, _ := gang.KeyOf(pod)
	counts := pl.index.ObservePod(key, pod)
	if pod.Spec.NodeName != "" {
		pl.memberBound(logger, pod, key, counts)
		return
	}
	// Only the member that completes the quorum wakes the others, so a gang
	// of n members costs one activation, not n.
	policy, reason := pl.resolver.Resolve(pod)
	if reason == nil && policy.IsGang() && counts.Present == int(policy.MinCount) {
		pl.activate(logger, key, "gang quorum reached")
	}
}

func (pl *WorkloadCoscheduling) podUpdated(logger klog.Logger, pod *v1.Pod) {
	key, _ := gang.KeyOf(pod)
	counts := pl.index.ObservePod(key, pod)
	if pod.Spec.NodeName != "" {
		pl.memberBound(logger, pod, key, counts)
	}
}

// podDeleted forgets a member. A member deleted while it held a reservation
// leaves its gang unable to complete this attempt: the gang is rolled back,
// and waits for a replacement.
func (pl *WorkloadCoscheduling) podDeleted(logger klog.Logger, pod *v1.Pod) {
	if pod == nil {
		return
	}
	key, ok := gang.KeyOf(pod)
	if !ok {
		return
	}
	counts, heldReservation := pl.index.DeletePod(key, pod.UID)
	if !heldReservation {
		return
	}
	if policy, reason := pl.resolver.Resolve(pod); reason == nil && policy.IsGang() && counts.Bound < int(policy.MinCount) {
		pl.rollback(klog.NewContext(context.Background(), logger), key, resultMemberDeleted,
			fmt.Sprintf("gang %s rejected: member %s was deleted while it held a reservation", key, pod.Name))
	}
}

// memberBound records when a gang has minCount members bound, and lets the
// waiting members of a gang go when a bound member the index learns of late
// (after a restart, say) completes the gang.
func (pl *WorkloadCoscheduling) memberBound(logger klog.Logger, pod *v1.Pod, key gang.Key, counts gang.Counts) {
	policy, reason := pl.resolver.Resolve(pod)
	if reason != nil || !policy.IsGang() {
		return
	}
	if counts.Bound >= int(policy.MinCount) {
		if took, first := pl.index.Complete(key, pl.now()); first {
			gangAdmissionDuration.Observe(took.Seconds())
		}
	}
	if counts.Reserved > 0 && counts.Placed() >= int(policy.MinCount) {
		if allowed := pl.allowWaiting(key); allowed > 0 {
			logger.V(3).Info("Gang completed by a bound member", "gang", key, "allowedWaiting", allowed)
		}
	}
}

// workloadAdded records the Workload, then wakes the pods that waited for it:
// in that order, so that their PreEnqueue finds it.
func (pl *WorkloadCoscheduling) workloadAdded(logger klog.Logger, w *schedulingv1alpha1.Workload) {
	pl.resolver.SetWorkload(w)
	pl.workloadArrived(logger, w, false)
}

// workloadArrived tells the user about the Workload's annotations and wakes
// the gangs that waited for it; the resolver already has it.
func (pl *WorkloadCoscheduling) workloadArrived(logger klog.Logger, w workloadObject, portable bool) {
	pl.checkAnnotations(w)
	for _, key := range pl.index.GangsOf(gang.WorkloadKey{Namespace: w.GetNamespace(), Name: w.GetName(), Portable: portable}) {
		pl.activate(logger, key, "workload added")
	}
}

// workloadObject is a Workload, built-in or portable.
type workloadObject interface {
	runtime.Object
	metav1.Object
}

// checkAnnotations tells the user, on the Workload, when its Permit timeout
// annotation is ignored or clamped.
func (pl *WorkloadCoscheduling) checkAnnotations(w workloadObject) {
	if _, problem := workloadref.PermitTimeoutOf(w); problem != "" {
		pl.handle.EventRecorder().Eventf(w, nil, v1.EventTypeWarning, "InvalidPermitWaitingTime", "Scheduling", problem)
	}
}

// workloadDeleted rejects the members waiting at Permit: without their
// Workload their gang can no longer be admitted, and they should not hold
// nodes until their timeout. It is no failure of the gang: no backoff.
func (pl *WorkloadCoscheduling) workloadDeleted(logger klog.Logger, w workloadObject, portable bool) {
	for _, key := range pl.index.GangsOf(gang.WorkloadKey{Namespace: w.GetNamespace(), Name: w.GetName(), Portable: portable}) {
		if n := pl.rejectWaiting(key, fmt.Sprintf("Workload %s/%s was deleted", w.GetNamespace(), w.GetName())); n > 0 {
			logger.V(3).Info("Rejected waiting gang members: their Workload was deleted", "gang", key, "rejected", n)
		}
	}
}

func (pl *WorkloadCoscheduling) activate(logger klog.Logger, key gang.Key, why string) {
	if pods := pl.index.PendingPods(key); len(pods) > 0 {
		logger.V(4).Info("Activating gang members", "gang", key, "reason", why, "pods", len(pods))
		pl.handle.Activate(logger, pods)
	}
}

// nodeDeleted rolls back the gangs with a member waiting at Permit on the
// node: were the gang admitted, that member would be bound to a node that no
// longer exists.
func (pl *WorkloadCoscheduling) nodeDeleted(logger klog.Logger, node *v1.Node) {
	for _, key := range pl.index.ReservedOn(node.Name) {
		pl.rollback(klog.NewContext(context.Background(), logger), key, resultNodeDeleted,
			fmt.Sprintf("gang %s rejected: node %s, reserved by one of its members, was deleted", key, node.Name))
	}
}

func nodeFrom(obj interface{}) *v1.Node {
	switch t := obj.(type) {
	case *v1.Node:
		return t
	case cache.DeletedFinalStateUnknown:
		node, _ := t.Obj.(*v1.Node)
		return node
	}
	return nil
}

func podFrom(obj interface{}) *v1.Pod {
	switch t := obj.(type) {
	case *v1.Pod:
		return t
	case cache.DeletedFinalStateUnknown:
		pod, _ := t.Obj.(*v1.Pod)
		return pod
	}
	return nil
}

func workloadFrom(obj interface{}) *schedulingv1alpha1.Workload {
	switch t := obj.(type) {
	case *schedulingv1alpha1.Workload:
		return t
	case cache.DeletedFinalStateUnknown:
		w, _ := t.Obj.(*schedulingv1alpha1.Workload)
		return w
	}
	return nil
}
