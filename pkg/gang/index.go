package gang

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Counts is a snapshot of one gang.
type Counts struct {
	// Present is the number of member pods that exist and have not finished.
	Present int
	// Reserved is the number of members this scheduler has reserved a node
	// for and not yet seen bound.
	Reserved int
	// Bound is the number of members bound to a node.
	Bound int
}

// Placed is the number of members that hold a node: reserved or bound.
func (c Counts) Placed() int { return c.Reserved + c.Bound }

type memberState uint8

const (
	statePending memberState = iota
	stateReserved
	stateBound
)

type member struct {
	pod   *v1.Pod
	state memberState
	// reason is the last waiting reason reported for this member, so that the
	// same reason is not reported again on every requeue.
	reason string
}

type gang struct {
	members map[types.UID]*member
	counts  Counts
}

// Index holds every gang that has at least one member. It is safe for
// concurrent use.
type Index struct {
	mu         sync.RWMutex
	gangs      map[Key]*gang
	byWorkload map[WorkloadKey]map[Key]struct{}
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		gangs:      map[Key]*gang{},
		byWorkload: map[WorkloadKey]map[Key]struct{}{},
	}
}

// ObservePod records a member pod as the API server reports it: a pod with a
// node is bound; one without keeps its reservation if it has one. It returns
// the gang's counts after the change.
func (x *Index) ObservePod(key Key, pod *v1.Pod) Counts {
	x.mu.Lock()
	defer x.mu.Unlock()
	g := x.gangLocked(key)
	m := g.memberLocked(pod)
	m.pod = pod
	if pod.Spec.NodeName != "" {
		g.setState(m, stateBound)
	}
	return g.counts
}

// DeletePod forgets a member pod. It returns the gang's counts after the
// change; a gang left with no members is dropped from the index.
func (x *Index) DeletePod(key Key, uid types.UID) Counts {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok {
		return Counts{}
	}
	if m, ok := g.members[uid]; ok {
		g.setState(m, statePending)
		delete(g.members, uid)
		g.counts.Present--
	}
	if len(g.members) == 0 {
		x.dropLocked(key)
	}
	return g.counts
}

// Reserve records that a node was reserved for the member pod and returns the
// gang's counts after the change. A pod the index has not seen yet (the
// informer may deliver it after the scheduler's queue did) is added.
func (x *Index) Reserve(key Key, pod *v1.Pod) Counts {
	x.mu.Lock()
	defer x.mu.Unlock()
	g := x.gangLocked(key)
	m := g.memberLocked(pod)
	if m.state == statePending {
		g.setState(m, stateReserved)
	}
	return g.counts
}

// Unreserve undoes Reserve for a member that was not bound.
func (x *Index) Unreserve(key Key, uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if g, ok := x.gangs[key]; ok {
		if m, ok := g.members[uid]; ok && m.state == stateReserved {
			g.setState(m, statePending)
		}
	}
}

// Counts returns the gang's counts; a gang with no members has zero counts.
func (x *Index) Counts(key Key) Counts {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if g, ok := x.gangs[key]; ok {
		return g.counts
	}
	return Counts{}
}

// PendingPods returns the members that hold no node, keyed by namespace/name,
// in the form the scheduler's Activate takes.
func (x *Index) PendingPods(key Key) map[string]*v1.Pod {
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.gangs[key]
	if !ok {
		return nil
	}
	pods := make(map[string]*v1.Pod, g.counts.Present-g.counts.Placed())
	for _, m := range g.members {
		if m.state == statePending {
			pods[m.pod.Namespace+"/"+m.pod.Name] = m.pod
		}
	}
	return pods
}

// ReservedPods returns the UIDs of the members that hold a reservation.
func (x *Index) ReservedPods(key Key) []types.UID {
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.gangs[key]
	if !ok {
		return nil
	}
	uids := make([]types.UID, 0, g.counts.Reserved)
	for uid, m := range g.members {
		if m.state == stateReserved {
			uids = append(uids, uid)
		}
	}
	return uids
}

// GangsOf returns the keys of the gangs of a Workload that have members.
func (x *Index) GangsOf(workload WorkloadKey) []Key {
	x.mu.RLock()
	defer x.mu.RUnlock()
	keys := make([]Key, 0, len(x.byWorkload[workload]))
	for k := range x.byWorkload[workload] {
		keys = append(keys, k)
	}
	return keys
}

// SetReason records why a member waits and reports whether that differs from
// the reason recorded before (or the member is not indexed yet), that is,
// whether it is worth telling the user.
func (x *Index) SetReason(key Key, uid types.UID, reason string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok {
		return true
	}
	m, ok := g.members[uid]
	if !ok {
		return true
	}
	if m.reason == reason {
		return false
	}
	m.reason = reason
	return true
}

// Len returns the number of gangs in the index.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.gangs)
}

func (x *Index) gangLocked(key Key) *gang {
	g, ok := x.gangs[key]
	if !ok {
		g = &gang{members: map[types.UID]*member{}}
		x.gangs[key] = g
		wk := key.WorkloadKey()
		if x.byWorkload[wk] == nil {
			x.byWorkload[wk] = map[Key]struct{}{}
		}
		x.byWorkload[wk][key] = struct{}{}
	}
	return g
}

func (x *Index) dropLocked(key Key) {
	delete(x.gangs, key)
	wk := key.WorkloadKey()
	delete(x.byWorkload[wk], key)
	if len(x.byWorkload[wk]) == 0 {
		delete(x.byWorkload, wk)
	}
}

func (g *gang) memberLocked(pod *v1.Pod) *member {
	m, ok := g.members[pod.UID]
	if !ok {
		m = &member{pod: pod}
		g.members[pod.UID] = m
		g.counts.Present++
	}
	return m
}

// setState moves a member to a new state and keeps the counts in step.
func (g *gang) setState(m *member, s memberState) {
	switch m.state {
	case stateReserved:
		g.counts.Reserved--
	case stateBound:
		g.counts.Bound--
	}
	switch s {
	case stateReserved:
		g.counts.Reserved++
	case stateBound:
		g.counts.Bound++
	}
	m.state = s
}
