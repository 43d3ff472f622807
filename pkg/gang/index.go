package gang

import (
	"sync"
	"sync/atomic"
	"time"

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
	// node is the node reserved for the member while it is reserved.
	node string
	// rejected is set when a rollback rejected this member's reservation,
	// so that its Unreserve does not roll the gang back once more.
	rejected bool
	// reason is the last waiting reason reported for this member, so that the
	// same reason is not reported again on every requeue.
	reason string
}

type gang struct {
	members map[types.UID]*member
	counts  Counts
	clock   *clock
	// firstSeen is the creation of the gang's first member; complete is set
	// once minCount members were bound (see Complete).
	firstSeen time.Time
	complete  bool
	// attemptStart is when the current attempt reserved its first member;
	// admitted is set when the attempt reached its quorum at Permit.
	attemptStart time.Time
	admitted     bool
	// reason is the last reason reported for the whole gang (see
	// SetGangReason).
	reason string
}

// clock holds the times a gang is ordered and held back by. They are read on
// the scheduling hot path (QueueSort) without a lock.
type clock struct {
	// queued is when the gang entered the queue, in Unix nanoseconds: the
	// creation of its first member, or its last failed attempt.
	queued atomic.Int64
	// backoffUntil is when the gang may be tried again after a failed
	// attempt, in Unix nanoseconds; zero when it is not backing off.
	backoffUntil atomic.Int64
}

// Index holds every gang that has at least one member. It is safe for
// concurrent use.
type Index struct {
	mu         sync.RWMutex
	gangs      map[Key]*gang
	byWorkload map[WorkloadKey]map[Key]struct{}
	// clocks maps each Key in gangs to its *clock. It is written under mu
	// and read without it.
	clocks sync.Map
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
	g := x.gangLocked(key, pod)
	m := g.memberLocked(pod)
	m.pod = pod
	if pod.Spec.NodeName != "" {
		g.setState(m, stateBound)
		m.rejected = false
	}
	return g.counts
}

// DeletePod forgets a member pod. It returns the gang's counts after the
// change, and whether the member held a reservation that no rollback had
// rejected yet; a gang left with no members is dropped from the index.
func (x *Index) DeletePod(key Key, uid types.UID) (counts Counts, heldReservation bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok {
		return Counts{}, false
	}
	if m, ok := g.members[uid]; ok {
		heldReservation = m.state == stateReserved && !m.rejected
		g.setState(m, statePending)
		delete(g.members, uid)
		g.counts.Present--
	}
	if len(g.members) == 0 {
		x.dropLocked(key)
	}
	return g.counts, heldReservation
}

// Reserve records that node was reserved for the member pod and returns the
// gang's counts after the change. A pod the index has not seen yet (the
// informer may deliver it after the scheduler's queue did) is added.
func (x *Index) Reserve(key Key, pod *v1.Pod, node string) Counts {
	x.mu.Lock()
	defer x.mu.Unlock()
	g := x.gangLocked(key, pod)
	m := g.memberLocked(pod)
	if m.state == statePending {
		g.setState(m, stateReserved)
		m.rejected, m.node = false, node
		if g.attemptStart.IsZero() {
			g.attemptStart = time.Now()
		}
	}
	return g.counts
}

// Admit records that the gang's current attempt reached its quorum at Permit.
// The first call of an attempt reports true and how long the attempt's
// members have waited since the first of them reserved; later calls (members
// beyond minCount) report false.
func (x *Index) Admit(key Key, now time.Time) (waited time.Duration, first bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok || g.admitted {
		return 0, false
	}
	g.admitted = true
	return sinceOrZero(now, g.attemptStart), true
}

// Admitted reports whether the gang's current attempt reached its quorum: a
// member that fails afterwards failed to bind.
func (x *Index) Admitted(key Key) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.gangs[key]
	return ok && g.admitted
}

// Complete records that minCount members of the gang are bound. The first
// call reports true and how long it took since the first member was created.
func (x *Index) Complete(key Key, now time.Time) (took time.Duration, first bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok || g.complete {
		return 0, false
	}
	g.complete = true
	return sinceOrZero(now, g.firstSeen), true
}

func sinceOrZero(now, t time.Time) time.Duration {
	if t.IsZero() || now.Before(t) {
		return 0
	}
	return now.Sub(t)
}

// Unreserve undoes Reserve for a member that was not bound. It reports
// whether the member held a reservation, and whether a rollback had rejected
// it (then its release is part of that rollback, not a new failure).
func (x *Index) Unreserve(key Key, uid types.UID) (wasReserved, byRollback bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok {
		return false, false
	}
	m, ok := g.members[uid]
	if !ok || m.state != stateReserved {
		return false, false
	}
	g.setState(m, statePending)
	byRollback = m.rejected
	m.rejected = false
	return true, byRollback
}

// StartRollback marks every member that holds a reservation and was not
// rejected yet as rejected, and returns them: the caller rejects them, and
// their Unreserve then knows it is part of this rollback.
func (x *Index) StartRollback(key Key) []types.UID {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok {
		return nil
	}
	var uids []types.UID
	for uid, m := range g.members {
		if m.state == stateReserved && !m.rejected {
			m.rejected = true
			uids = append(uids, uid)
		}
	}
	return uids
}

// Fail records a failed attempt of the gang at now: it queues behind the
// gangs that came since, and is held back until now+backoff. It returns how
// long the attempt's members waited since the first of them reserved (zero
// when none had).
func (x *Index) Fail(key Key, now time.Time, backoff time.Duration) (waited time.Duration) {
	x.mu.Lock()
	if g, ok := x.gangs[key]; ok {
		waited = sinceOrZero(now, g.attemptStart)
		g.attemptStart, g.admitted = time.Time{}, false
	}
	x.mu.Unlock()
	if c := x.clock(key); c != nil {
		c.queued.Store(now.UnixNano())
		if backoff > 0 {
			c.backoffUntil.Store(now.Add(backoff).UnixNano())
		}
	}
	return waited
}

// BackoffLeft returns how long the gang is still held back after a failed
// attempt, or zero.
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

func (x *Index) clock(key Key) *clock {
	if c, ok := x.clocks.Load(key); ok {
		return c.(*clock)
	}
	return nil
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

// ReservedOn returns the gangs with a member that holds a reservation of the
// node and was not rejected yet. It looks at every gang: it is for a node's
// deletion, not for the scheduling path.
func (x *Index) ReservedOn(node string) []Key {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var keys []Key
	for key, g := range x.gangs {
		for _, m := range g.members {
			if m.state == stateReserved && !m.rejected && m.node == node {
				keys = append(keys, key)
				break
			}
		}
	}
	return keys
}

// Each calls fn, under the index's read lock, for every gang with its counts
// and the end of its backoff (Unix nanoseconds, 0 when none). fn must not
// call the index.
func (x *Index) Each(fn func(key Key, counts Counts, backoffUntil int64)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for key, g := range x.gangs {
		fn(key, g.counts, g.clock.backoffUntil.Load())
	}
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

// Len returns the number of gangs in the index.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.gangs)
}

// gangLocked returns the gang of key, creating it, queued at the creation of
// its first member pod, if it has no members yet.
func (x *Index) gangLocked(key Key, first *v1.Pod) *gang {
	g, ok := x.gangs[key]
	if !ok {
		g = &gang{members: map[types.UID]*member{}, clock: &clock{}}
		created := first.CreationTimestamp.Time
		if created.IsZero() {
			created = time.Now()
		}
		g.clock.queued.Store(created.UnixNano())
		g.firstSeen = created
		x.clocks.Store(key, g.clock)
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
	x.clocks.Delete(key)
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
