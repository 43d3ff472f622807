package gang

import (
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Readiness says whether a gang's member may be tried now.
type Readiness struct {
	// Present is the number of live members, the asking pod included even
	// when the informer has not delivered it yet (the queue can see a new
	// pod first).
	Present int
	// BackoffLeft is how long the gang still waits after a failed attempt.
	BackoffLeft time.Duration
	// Known reports whether the index has the asking pod already.
	Known bool
	// Victims is how many pods the gang's preemption evicted that have not
	// gone yet (while it waits for them).
	Victims int
	// StoreKey is StoreKey(key, the index's schedulerName), kept by the
	// index ("" for a gang it does not know yet).
	StoreKey string
}

// Ready reports, for a pod of the gang, how many live members the gang has
// and how long it still backs off. It takes the read lock once and
// allocates nothing.
func (x *Index) Ready(key Key, pod *v1.Pod, now time.Time) Readiness {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var r Readiness
	g, ok := x.gangs[key]
	if ok {
		r.Present, r.StoreKey = g.counts.Present, g.storeKey
		_, r.Known = g.members[pod.UID]
		if left := time.Duration(g.clock.backoffUntil.Load() - now.UnixNano()); left > 0 {
			r.BackoffLeft = left
		}
		if now.Before(g.victimsDeadline) {
			r.Victims = len(g.victims)
		}
	}
	if !r.Known && x.Counted(pod) && !Gone(pod) {
		r.Present++
	}
	return r
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

// Phase returns the gang's phase at now, and false for a gang with no
// members.
func (x *Index) Phase(key Key, now time.Time) (Phase, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if g, ok := x.gangs[key]; ok {
		return g.phase(now), true
	}
	return PhaseAssembling, false
}

// Attempt returns the number of the gang's current attempt.
func (x *Index) Attempt(key Key) uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if g, ok := x.gangs[key]; ok {
		return g.attempt
	}
	return 0
}

// Has reports whether the index knows the pod as a member of the gang.
func (x *Index) Has(key Key, uid types.UID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.gangs[key]
	if !ok {
		return false
	}
	_, ok = g.members[uid]
	return ok
}

// BackoffLeft returns how long the gang is still held back after a failed
// attempt, or zero. It takes no lock.
func (x *Index) BackoffLeft(key Key, now time.Time) time.Duration {
	c := x.clock(key)
	if c == nil {
		return 0
	}
	if left := time.Duration(c.backoffUntil.Load() - now.UnixNano()); left > 0 {
		return left
	}
	return 0
}

// QueuedAt returns when the gang entered the queue (Unix nanoseconds): the
// creation of its first member, or its last failed attempt. It takes no lock
// and allocates nothing.
func (x *Index) QueuedAt(key Key) (int64, bool) {
	if c := x.clock(key); c != nil {
		return c.queued.Load(), true
	}
	return 0, false
}

// Order returns what the queue orders a gang by, its priority and its queue
// time (see Priority and QueuedAt), with one lock-free lookup.
func (x *Index) Order(key Key) (priority int32, queued int64, ok bool) {
	if c := x.clock(key); c != nil {
		return c.priority.Load(), c.queued.Load(), true
	}
	return 0, 0, false
}

// Priority returns the gang's priority: the highest of its live members
// (of its first member while it has none). It takes no lock and allocates
// nothing.
func (x *Index) Priority(key Key) (int32, bool) {
	if c := x.clock(key); c != nil {
		return c.priority.Load(), true
	}
	return 0, false
}

// PreemptionRights says what the gang may preempt: pods below the priority
// of its lowest live member, and nothing when one of them has
// preemptionPolicy Never.
func (x *Index) PreemptionRights(key Key) (below int32, never bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if g, ok := x.gangs[key]; ok {
		return g.lowestPriority(), g.neverPreempts > 0
	}
	return 0, false
}

func (x *Index) clock(key Key) *clock {
	if c, ok := x.clocks.Load(key); ok {
		return c.(*clock)
	}
	return nil
}

// PendingPods returns the live members that hold no node, or only a
// reservation a rollback rejected (they are on their way back to the
// queue), keyed by namespace/name, in the form the scheduler's Activate
// takes.
func (x *Index) PendingPods(key Key) map[string]*v1.Pod {
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.gangs[key]
	if !ok {
		return nil
	}
	pods := make(map[string]*v1.Pod, g.counts.Present-g.counts.Placed())
	for _, m := range g.members {
		if (m.state == memberPending || m.state == memberRejected) && m.live() {
			pods[m.pod.Namespace+"/"+m.pod.Name] = m.pod
		}
	}
	return pods
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

// Members returns the gang's members that hold a node, whoever placed them
// (bound, or reserved and waiting at Permit, shallow copies with the
// reserved node as spec.nodeName), and the gang's current
// attempt: what a preemption that takes the gang as a victim must evict or
// reject.
func (x *Index) Members(key Key) (bound []*v1.Pod, reserved []*v1.Pod, attempt uint64) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.gangs[key]
	if !ok {
		return nil, nil, 0
	}
	for _, m := range g.members {
		switch {
		case m.state == memberBound:
			bound = append(bound, m.pod)
		case m.state == memberReserved:
			// As the scheduler's cache has it: on the node it reserved.
			onNode := *m.pod
			onNode.Spec.NodeName = m.node
			reserved = append(reserved, &onNode)
		}
	}
	return bound, reserved, g.attempt
}

// Reservation is a gang's attempt holding a reservation of a node.
type Reservation struct {
	Key     Key
	Attempt uint64
}

// ReservedOn returns the gangs with a member that holds a live reservation
// of the node. It looks at every gang: it is for a node's deletion, not for
// the scheduling path.
func (x *Index) ReservedOn(node string) []Reservation {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var found []Reservation
	for key, g := range x.gangs {
		for _, m := range g.members {
			if m.state == memberReserved && m.node == node {
				found = append(found, Reservation{Key: key, Attempt: g.attempt})
				break
			}
		}
	}
	return found
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

// SetGangReason records why the whole gang waits and reports whether that
// differs from the reason recorded before (or the gang is not indexed yet).
func (x *Index) SetGangReason(key Key, reason string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok {
		return true
	}
	if g.reason == reason {
		return false
	}
	g.reason = reason
	return true
}

// Reported records that the user was told the gang waits, so that its
// admission is told too (Effects.Eventful).
func (x *Index) Reported(key Key) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if g, ok := x.gangs[key]; ok {
		g.reported = true
	}
}

// Summary is one gang as Each reports it.
type Summary struct {
	Key      Key
	Counts   Counts
	Phase    Phase
	MinCount int
}

// Each calls fn, under the index's read lock, for every gang. fn must not
// call the index.
func (x *Index) Each(now time.Time, fn func(Summary)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for key, g := range x.gangs {
		fn(Summary{Key: key, Counts: g.counts, Phase: g.phase(now), MinCount: g.minCount})
	}
}

// Len returns the number of gangs in the index.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.gangs)
}
