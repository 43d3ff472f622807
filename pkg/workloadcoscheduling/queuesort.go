package workloadcoscheduling

import (
	"strings"

	v1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// Less orders the scheduling queue so that the members of a gang leave it one
// after another instead of interleaving with other gangs:
//
//  1. higher priority first; a gang's priority is that of its highest live
//     member, so its members stay together whatever their own priorities;
//  2. earlier queue time first: for a gang member, its gang's (the creation
//     of its first member, or its last failed attempt, so that a gang that
//     failed goes behind the gangs that came since); for any other pod, the
//     time it entered the queue, as the default PrioritySort;
//  3. gang identity (namespace, Workload, podGroup, replica key), pods
//     without a gang first;
//  4. the pod's namespace and name.
//
// It is a strict weak ordering, takes no lock and allocates nothing.
func (pl *WorkloadCoscheduling) Less(a, b fwk.QueuedPodInfo) bool {
	podA, podB := a.GetPodInfo().GetPod(), b.GetPodInfo().GetPod()
	keyA, inGangA := gang.KeyOf(podA)
	keyB, inGangB := gang.KeyOf(podB)
	prioA, tA := pl.order(a, podA, keyA, inGangA)
	prioB, tB := pl.order(b, podB, keyB, inGangB)
	if prioA != prioB {
		return prioA > prioB
	}
	if tA != tB {
		return tA < tB
	}
	if inGangA != inGangB {
		return !inGangA
	}
	if inGangA {
		if c := keyA.Compare(keyB); c != 0 {
			return c < 0
		}
	}
	if c := strings.Compare(podA.Namespace, podB.Namespace); c != 0 {
		return c < 0
	}
	return podA.Name < podB.Name
}

// order returns the priority and the time (Unix nanoseconds) Less orders a
// pod by: for a gang member its gang's priority (never below its own) and
// queue time, or, before the informer delivered the gang's first member,
// the pod's own priority and creation, as its gang will be; for any other
// pod its priority and when it entered the queue, as the default
// PrioritySort.
func (pl *WorkloadCoscheduling) order(info fwk.QueuedPodInfo, pod *v1.Pod, key gang.Key, inGang bool) (int32, int64) {
	own := corev1helpers.PodPriority(pod)
	if !inGang {
		return own, info.GetTimestamp().UnixNano()
	}
	if prio, queued, ok := pl.index.Order(key); ok {
		return max(prio, own), queued
	}
	return own, pod.CreationTimestamp.UnixNano()
}
