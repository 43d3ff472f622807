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

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// watch feeds the gang index from the scheduler's shared informers and
// carries out what each change decides. Waking goes through the index,
// after it was updated, so a pod never misses the change that lets it in:
// the queue runs PreEnqueue again on Activate, and reads the updated index.
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
		Handler: cache.ResourceEventHandlerDetailedFuncs{
			AddFunc: func(obj interface{}, isInInitialList bool) {
				pod := obj.(*v1.Pod)
				// A pod that arrives bound after the initial list was created
				// with spec.nodeName: no scheduler placed it. One in the
				// initial list may have been placed by this scheduler before
				// it restarted.
				pl.podObserved(logger, pod, !isInInitialList && pod.Spec.NodeName != "")
			},
			UpdateFunc: func(oldObj, newObj interface{}) { pl.podUpdated(logger, oldObj.(*v1.Pod), newObj.(*v1.Pod)) },
			DeleteFunc: func(obj interface{}) { pl.podDeleted(logger, podFrom(obj)) },
		},
	}
	registration, err := pl.handle.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(podHandler)
	if err != nil {
		return fmt.Errorf("%s: watching pods: %w", Name, err)
	}
	pl.handlers = append(pl.handlers, registration)
	// Any bound pod's deletion may be the last victim a preempting gang
	// waits for.
	victimHandler := cache.FilteringResourceEventHandler{
		FilterFunc: func(obj interface{}) bool {
			pod := podFrom(obj)
			return pod != nil && pod.Spec.NodeName != ""
		},
		Handler: cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj interface{}) { pl.victimGone(logger, podFrom(obj)) }},
	}
	registration, err = pl.handle.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(victimHandler)
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
			if old.Annotations[gang.PermitWaitingTimeAnnotation] != w.Annotations[gang.PermitWaitingTimeAnnotation] {
				pl.checkAnnotations(w)
			}
		},
		DeleteFunc: func(obj interface{}) {
			if w := workloadFrom(obj); w != nil {
				pl.resolver.DeleteWorkload(w)
				pl.workloadDeleted(logger, w, gang.SourceWorkload)
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

// podObserved records a member as the informer reports it (created, bound,
// terminating, finished) and carries out what that decides: the quorum
// wakes the gang, a bound member may complete an attempt's quorum, a member
// that terminates while reserved fails its attempt.
func (pl *WorkloadCoscheduling) podObserved(logger klog.Logger, pod *v1.Pod, createdBound bool) {
	m, ok := pl.membershipOf(pod)
	if !ok {
		return
	}
	e := pl.index.ObservePod(m.key, pod, createdBound, m.minCount(), pl.witness, pl.now())
	why := ""
	if e.RolledBack {
		why = fmt.Sprintf("gang %s rejected: member %s is terminating while it held a reservation", m.key, pod.Name)
	}
	pl.carryOut(klog.NewContext(context.Background(), logger), m.key, e, why)
}

// podUpdated moves a member whose reference changed (portable annotations
// are mutable) out of its old gang before recording it in the new one.
func (pl *WorkloadCoscheduling) podUpdated(logger klog.Logger, old, pod *v1.Pod) {
	if oldKey, ok := gang.KeyOf(old); ok {
		if newKey, _ := gang.KeyOf(pod); newKey != oldKey {
			m, _ := pl.membershipOf(old)
			e := pl.index.LeavePod(oldKey, old.UID, m.minCount(), pl.now())
			why := ""
			if e.RolledBack {
				why = fmt.Sprintf("gang %s rejected: member %s moved to gang %s while it held a reservation", oldKey, pod.Name, newKey)
			}
			pl.carryOut(klog.NewContext(context.Background(), logger), oldKey, e, why)
		}
	}
	pl.podObserved(logger, pod, false)
}

// podDeleted forgets a member. A member deleted while it held a reservation
// leaves its gang unable to complete this attempt: the attempt fails, and
// the gang waits for a replacement.
func (pl *WorkloadCoscheduling) podDeleted(logger klog.Logger, pod *v1.Pod) {
	if pod == nil {
		return
	}
	m, ok := pl.membershipOf(pod)
	if !ok {
		return
	}
	pl.ignoredTold.Delete(pod.UID)
	pl.startup.forget(pod)
	e := pl.index.DeletePod(m.key, pod.UID, m.minCount(), pl.now())
	why := ""
	if e.RolledBack {
		why = fmt.Sprintf("gang %s rejected: member %s was deleted while it held a reservation", m.key, pod.Name)
	}
	pl.carryOut(klog.NewContext(context.Background(), logger), m.key, e, why)
}

// victimGone wakes the gang that preempted the pod once its last victim is
// gone.
func (pl *WorkloadCoscheduling) victimGone(logger klog.Logger, pod *v1.Pod) {
	if pod == nil {
		return
	}
	// The scheduler's cache may still hold the victim when this runs: an
	// attempt that fails on that account does not preempt again
	// (gang.PreemptionCooldown); the Pod/Delete hint wakes the gang once the
	// cache let the victim go.
	if key, e := pl.index.VictimGone(pod.UID, pl.now()); e.Activate {
		pl.activate(logger, key, "the pods it preempted are gone")
	}
}

// workloadAdded records the Workload, then wakes the pods that waited for it:
// in that order, so that their PreEnqueue finds it.
func (pl *WorkloadCoscheduling) workloadAdded(logger klog.Logger, w *schedulingv1alpha1.Workload) {
	pl.resolver.SetWorkload(w)
	pl.workloadArrived(logger, w, gang.SourceWorkload)
}

// workloadArrived tells the user about the Workload's annotations and wakes
// the gangs that waited for it; the resolver already has it.
func (pl *WorkloadCoscheduling) workloadArrived(logger klog.Logger, w workloadObject, source gang.Source) {
	pl.checkAnnotations(w)
	pl.wakeGangsOf(logger, gang.WorkloadKey{Namespace: w.GetNamespace(), Name: w.GetName(), Source: source}, "workload added")
}

// wakeGangsOf gives the gangs of the Workload or PodGroup their quorum,
// which the resolver now knows, and has the queue judge their members again.
func (pl *WorkloadCoscheduling) wakeGangsOf(logger klog.Logger, workload gang.WorkloadKey, why string) {
	for _, key := range pl.index.GangsOf(workload) {
		if policy, reason := pl.resolver.ResolveKey(key); reason == nil && policy.IsGang() {
			pl.index.SetMinCount(key, int(policy.MinCount), pl.now())
		}
		pl.activate(logger, key, why)
	}
}

// workloadObject is a Workload, built-in or portable.
type workloadObject interface {
	runtime.Object
	metav1.Object
}

// checkAnnotations tells the user, on the Workload, when its Permit timeout
// annotation is ignored or clamped, or a topology annotation ignored. Only
// the leader tells (leader.go); it checks every Workload it knows when it
// starts to lead.
func (pl *WorkloadCoscheduling) checkAnnotations(w workloadObject) {
	if !pl.isLeading() {
		return
	}
	if _, problem := workloadref.PermitTimeoutOf(w); problem != "" {
		pl.sched.EventRecorder().Eventf(w, nil, v1.EventTypeWarning, ReasonInvalidPermitWaitingTime, "Scheduling", problem)
	}
	_, problems := workloadref.TopologyOf(w)
	for _, problem := range problems {
		pl.sched.EventRecorder().Eventf(w, nil, v1.EventTypeWarning, ReasonInvalidTopology, "Scheduling", problem)
	}
}

// workloadDeleted rejects the members waiting at Permit: without their
// Workload their gang can no longer be admitted, and they should not hold
// nodes until their timeout. It is no failure of the gang: no backoff.
func (pl *WorkloadCoscheduling) workloadDeleted(logger klog.Logger, w workloadObject, source gang.Source) {
	msg := fmt.Sprintf("Workload %s/%s was deleted", w.GetNamespace(), w.GetName())
	for _, key := range pl.index.GangsOf(gang.WorkloadKey{Namespace: w.GetNamespace(), Name: w.GetName(), Source: source}) {
		if n := pl.reject(pl.index.Release(key, pl.now()).Reject, msg); n > 0 {
			logger.V(3).Info("Rejected waiting gang members: their Workload was deleted", "gang", key, "rejected", n)
		}
	}
}

// nodeDeleted fails the attempts with a member waiting at Permit on the
// node: were the gang admitted, that member would be bound to a node that
// no longer exists.
func (pl *WorkloadCoscheduling) nodeDeleted(logger klog.Logger, node *v1.Node) {
	for _, r := range pl.index.ReservedOn(node.Name) {
		e := pl.index.Fail(r.Key, r.Attempt, gang.OutcomeNodeDeleted, pl.now())
		pl.carryOut(klog.NewContext(context.Background(), logger), r.Key, e,
			fmt.Sprintf("gang %s rejected: node %s, reserved by one of its members, was deleted", r.Key, node.Name))
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
