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
	if prioA, prioB := pl.priority(podA, keyA, inGangA), pl.priority(podB, keyB, inGangB); prioA != prioB {
		return prioA > prioB
	}
	if tA, tB := pl.queuedAt(a, keyA, inGangA), pl.queuedAt(b, keyB, inGangB); tA != tB {
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

// priority returns the priority Less orders a pod by: its gang's, or its own.
func (pl *WorkloadCoscheduling) priority(pod *v1.Pod, key gang.Key, inGang bool) int32 {
	own := corev1helpers.PodPriority(pod)
	if inGang {
		if p, ok := pl.index.Priority(key); ok && p > own {
			return p
		}
	}
	return own
}

// queuedAt returns the time in Unix nanoseconds Less orders a pod by.
func (pl *WorkloadCoscheduling) queuedAt(info fwk.QueuedPodInfo, key gang.Key, inGang bool) int64 {
	if inGang {
		if t, ok := pl.index.QueuedAt(key); ok {
			return t
		}
		// The informer has not delivered the gang's first member yet: order
		// the pod by its creation, as its gang will be.
		return info.GetPodInfo().GetPod().CreationTimestamp.UnixNano()
	}
	return info.GetTimestamp().UnixNano()
}
