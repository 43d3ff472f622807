package gang

import (
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
)

// clock holds the times a gang is ordered and held back by. They are read on
// the scheduling hot path (QueueSort) without a lock.
type clock struct {
	// queued is when the gang entered the queue, in Unix nanoseconds: the
	// creation of its first member, or its last failed attempt.
	queued atomic.Int64
	// backoffUntil is when the gang may be tried again after a failed
	// attempt, in Unix nanoseconds; zero when it is not backing off.
	backoffUntil atomic.Int64
	// priority is the highest priority of the gang's live members: the
	// gang's priority in the queue.
	priority atomic.Int32
}

// Config is how the index judges gangs.
type Config struct {
	// SchedulerName is the schedulerName of the pods this scheduler places:
	// only those count toward a quorum. Members of other schedulers stay
	// in the index (preemption needs every bound member of a gang) but
	// count for nothing. Empty counts every pod.
	SchedulerName string
	// Backoff is how long a gang waits after a failed attempt.
	Backoff time.Duration
}

// tombstoneTTL is how long the index remembers a deleted member, so that a
// scheduling callback that still holds the pod (a Reserve in the cycle the
// pod was deleted in) cannot bring it back.
const tombstoneTTL = 2 * time.Minute

type tombstone struct {
	uid types.UID
	at  time.Time
}

// Index holds every gang that has at least one member, and the state machine
// of each gang's attempt. Every transition takes the index's lock once and
// is atomic: no caller checks a state and then acts on it. It is safe for
// concurrent use.
type Index struct {
	cfg        Config
	mu         sync.RWMutex
	gangs      map[Key]*gang
	byWorkload map[WorkloadKey]map[Key]struct{}
	// deleted remembers recently deleted members (see tombstoneTTL);
	// tombstones lists them oldest first, for pruning.
	deleted    map[types.UID]struct{}
	tombstones []tombstone
	// victimOf maps each pod a preemption evicted to the gang it made room
	// for, until the pod is gone.
	victimOf map[types.UID]Key
	// waiters are the gangs whose last attempt failed and that back off,
	// true once a change of capacity lifted their backoff (see
	// WakeOnCapacity).
	waiters map[Key]bool
	// clocks maps each Key in gangs to its *clock. It is written under mu
	// and read without it.
	clocks sync.Map
}

// NewIndex returns an empty index.
func NewIndex(cfg Config) *Index {
	return &Index{
		cfg:        cfg,
		gangs:      map[Key]*gang{},
		byWorkload: map[WorkloadKey]map[Key]struct{}{},
		deleted:    map[types.UID]struct{}{},
		waiters:    map[Key]bool{},
		victimOf:   map[types.UID]Key{},
	}
}

// track keeps the waiters in step with a transition's effects.
func (x *Index) track(key Key, e *Effects) {
	switch {
	case e.RolledBack && e.Backoff > 0:
		x.waiters[key] = false
	case e.StartedAttempt || e.Admitted:
		delete(x.waiters, key)
	}
}

// Counted reports whether a pod counts toward its gang's quorum by its
// schedulerName.
func (x *Index) Counted(pod *v1.Pod) bool {
	return x.cfg.SchedulerName == "" || pod.Spec.SchedulerName == x.cfg.SchedulerName
}

// ObservePod records a member as the API server reports it. minCount is the
// gang's quorum (0 when its policy is unknown or not a gang). createdBound
// says the pod arrived with a node already (created with spec.nodeName, not
// placed by any scheduler): such a member never counts toward a quorum.
//
// A member that is terminating or finished is gone: when it held a
// reservation of an attempt not yet admitted, that attempt fails (a
// terminating pod cannot be bound). A member that moved to a bound node is
// bound; when that completes the quorum of an attempt whose other members
// wait at Permit, the attempt is admitted (see tryAdmit for w).
func (x *Index) ObservePod(key Key, pod *v1.Pod, createdBound bool, minCount int, w Witness, now time.Time) Effects {
	x.mu.Lock()
	defer x.mu.Unlock()
	g := x.gangLocked(key, pod)
	g.setMinCount(minCount)
	var e Effects
	m, known := g.members[pod.UID]
	if !known {
		m = &member{pod: pod, counted: x.Counted(pod) && !createdBound}
		m.setPod(pod)
		g.members[pod.UID] = m
		g.count(m, +1)
	}
	m.pod = pod
	switch {
	case Gone(pod):
		held := m.state == memberReserved
		g.setState(m, memberGone)
		if held && !g.admitted && !g.running() {
			g.fail(&e, OutcomeMemberDeleted, x.cfg.Backoff, pod.UID, now)
		}
	case pod.Spec.NodeName != "" && m.state != memberBound:
		m.node = pod.Spec.NodeName
		g.setState(m, memberBound)
		if g.counts.Reserved > 0 {
			g.tryAdmit(&e, pod.UID, w, x.cfg.Backoff, now)
		}
	}
	g.afterChange(&e, now)
	x.track(key, &e)
	return e
}

// DeletePod forgets a member. When it held a live reservation of an attempt
// not yet admitted, the attempt fails. A gang left with no members is
// dropped from the index.
func (x *Index) DeletePod(key Key, uid types.UID, minCount int, now time.Time) Effects {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.buryLocked(uid, now)
	return x.removeLocked(key, uid, minCount, now)
}

// LeavePod takes a member out of its gang without its pod being deleted:
// its reference changed (portable annotations are mutable) and it joins
// another gang, where it may still reserve. Otherwise as DeletePod.
func (x *Index) LeavePod(key Key, uid types.UID, minCount int, now time.Time) Effects {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.removeLocked(key, uid, minCount, now)
}

func (x *Index) removeLocked(key Key, uid types.UID, minCount int, now time.Time) Effects {
	g, ok := x.gangs[key]
	if !ok {
		return Effects{}
	}
	g.setMinCount(minCount)
	var e Effects
	if m, ok := g.members[uid]; ok {
		held := m.state == memberReserved
		g.count(m, -1)
		delete(g.members, uid)
		if held && !g.admitted && !g.running() {
			g.fail(&e, OutcomeMemberDeleted, x.cfg.Backoff, uid, now)
		}
	}
	g.afterChange(&e, now)
	x.track(key, &e)
	if len(g.members) == 0 {
		x.dropLocked(key)
	}
	return e
}

// Reserve records that node was reserved for the member in the gang's
// current attempt; the first reservation of an attempt starts it. A pod the
// informer has not delivered yet is added. It refuses (ok false) a pod that
// was deleted meanwhile, and one whose gang backs off after a failed
// attempt: a member must not join an attempt that already failed.
func (x *Index) Reserve(key Key, pod *v1.Pod, node string, minCount int, now time.Time) (e Effects, ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, gone := x.deleted[pod.UID]; gone {
		return Effects{}, false
	}
	g := x.gangLocked(key, pod)
	g.setMinCount(minCount)
	if g.clock.backoffUntil.Load() > now.UnixNano() {
		return g.effects(now), false
	}
	m, known := g.members[pod.UID]
	if !known {
		m = &member{pod: pod, counted: x.Counted(pod)}
		m.setPod(pod)
		g.members[pod.UID] = m
		g.count(m, +1)
	}
	if m.state == memberPending || m.state == memberRejected {
		m.attempt, m.node = g.attempt, node
		g.setState(m, memberReserved)
		if g.attemptStart.IsZero() {
			g.attemptStart, e.StartedAttempt = now, true
		}
	}
	g.afterChange(&e, now)
	x.track(key, &e)
	return e, true
}

// Verdict is Permit's decision for one member.
type Verdict uint8

const (
	// VerdictWait: the member waits at Permit for more of its gang.
	VerdictWait Verdict = iota
	// VerdictAllow: the member goes to binding (with the members in
	// Effects.Allow when this admitted the attempt).
	VerdictAllow
	// VerdictReject: the member's attempt is over: it failed now
	// (Effects.RolledBack) or before, or the gang backs off.
	VerdictReject
)

// Permit decides for a reserved member: admit the attempt when its live
// reservations and bound members reach minCount, let a member of an attempt
// already admitted (or a running gang) go, wait, or reject a member whose
// reservation a rollback rejected or whose gang backs off. w is the
// plugin's freshest view of the members (see tryAdmit).
func (x *Index) Permit(key Key, uid types.UID, minCount int, w Witness, now time.Time) (Effects, Verdict) {
	if e, waits := x.permitWaits(key, uid, minCount, now); waits {
		return e, VerdictWait
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	g, found := x.gangs[key]
	if !found {
		return Effects{}, VerdictReject
	}
	g.setMinCount(minCount)
	m, found := g.members[uid]
	if !found || m.state != memberReserved || m.attempt != g.attempt {
		return g.effects(now), VerdictReject
	}
	var e Effects
	switch {
	case g.admitted || g.running():
		g.afterChange(&e, now)
		return e, VerdictAllow
	case g.clock.backoffUntil.Load() > now.UnixNano():
		g.setState(m, memberRejected)
		g.afterChange(&e, now)
		return e, VerdictReject
	}
	g.tryAdmit(&e, uid, w, x.cfg.Backoff, now)
	g.afterChange(&e, now)
	x.track(key, &e)
	switch {
	case e.RolledBack:
		return e, VerdictReject
	case e.Admitted:
		return e, VerdictAllow
	}
	return e, VerdictWait
}

// permitWaits is Permit's common case under the read lock: a live
// reservation of the current attempt, not enough placed for the quorum, no
// backoff. Nothing changes then, and readers do not wait for each other;
// every other case takes the write lock and decides again.
func (x *Index) permitWaits(key Key, uid types.UID, minCount int, now time.Time) (Effects, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.gangs[key]
	if !ok || g.minCount != minCount || g.admitted || g.running() || g.counts.Placed() >= minCount ||
		g.clock.backoffUntil.Load() > now.UnixNano() {
		return Effects{}, false
	}
	m, ok := g.members[uid]
	if !ok || m.state != memberReserved || m.attempt != g.attempt {
		return Effects{}, false
	}
	return Effects{Counts: g.counts, Phase: PhaseAttempting, Attempt: g.attempt}, true
}

// Unreserve undoes Reserve for a member that was not bound. A member whose
// live reservation is released fails the attempt it belonged to, if that
// attempt is still the current one: after admission it is a bind failure
// (no backoff), before it the framework rejected the member (permitOutcome,
// a Permit timeout or a rejection). A member a rollback had rejected
// changes nothing more.
func (x *Index) Unreserve(key Key, uid types.UID, minCount int, permitOutcome Outcome, now time.Time) Effects {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok {
		return Effects{}
	}
	g.setMinCount(minCount)
	m, ok := g.members[uid]
	if !ok || (m.state != memberReserved && m.state != memberRejected) {
		return g.effects(now)
	}
	live := m.state == memberReserved && m.attempt == g.attempt
	g.setState(m, memberPending)
	var e Effects
	if live && !g.running() {
		outcome := permitOutcome
		if g.admitted {
			outcome = OutcomeBindFailure
		}
		g.fail(&e, outcome, x.cfg.Backoff, uid, now)
	}
	g.afterChange(&e, now)
	x.track(key, &e)
	return e
}

// Fail fails the gang's attempt number attempt with outcome, unless that
// attempt is over already (a later attempt runs), or it was admitted (its
// members are binding; only a bind failure ends it, through Unreserve), or
// the gang runs, or it backs off (the attempt that failed last already
// said so). It is how the plugin ends an attempt from outside the
// member callbacks: a member that fits no node (PostFilter), the attempt's
// deadline, a node deleted under a reservation.
func (x *Index) Fail(key Key, attempt uint64, outcome Outcome, now time.Time) Effects {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok || g.attempt != attempt || g.admitted || g.running() || g.clock.backoffUntil.Load() > now.UnixNano() {
		return Effects{}
	}
	var e Effects
	g.fail(&e, outcome, x.cfg.Backoff, "", now)
	g.afterChange(&e, now)
	x.track(key, &e)
	return e
}

// SetMinCount gives the gang its quorum, once its Workload is known (its
// members may have been observed before). It returns the effects: the
// quorum may be reached already.
func (x *Index) SetMinCount(key Key, minCount int, now time.Time) Effects {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok || minCount <= 0 {
		return Effects{}
	}
	g.setMinCount(minCount)
	var e Effects
	g.afterChange(&e, now)
	return e
}

// WakeOnCapacity reports whether more capacity (a bound pod deleted, a node
// added) can let the gang try now, and lifts the gang's backoff when that is
// what holds it: backoff stops spinning on an unchanged cluster, not a change
// that can make a higher-priority gang fit. So among the gangs that back off,
// only those of the highest priority are woken, each once per failed
// attempt; the others wait for their backoff's end, or for capacity once the
// higher ones have tried. A gang that assembles, has an attempt under way or
// waits for the victims of its preemption is not woken by capacity.
func (x *Index) WakeOnCapacity(key Key, now time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok {
		return true
	}
	switch g.phase(now) {
	case PhaseAssembling, PhaseAttempting, PhasePreempting:
		// A gang that waits for its victims is woken by their deletion.
		return false
	case PhaseBackingOff:
	default:
		return true
	}
	lifted, waiting := x.waiters[key]
	if !waiting || lifted {
		return false
	}
	if g.clock.priority.Load() < x.topLocked(now) {
		return false
	}
	g.clock.backoffUntil.Store(0)
	x.waiters[key] = true
	return true
}

// topLocked returns the highest priority among the waiters, forgetting those
// whose backoff ended on its own (their timer wakes them). Few gangs back off
// at once; it is asked only for a gang that does.
func (x *Index) topLocked(now time.Time) int32 {
	first, top := true, int32(0)
	for key, lifted := range x.waiters {
		g := x.gangs[key]
		if g == nil || (!lifted && g.clock.backoffUntil.Load() <= now.UnixNano()) {
			delete(x.waiters, key)
			continue
		}
		if p := g.clock.priority.Load(); first || p > top {
			first, top = false, p
		}
	}
	return top
}

// Preempted records that the gang's attempt is about to evict victims to
// make room for its members: the attempt ends (its waiting members are
// rejected, with no backoff), and the gang waits for the victims to go, at
// most wait, evicting nothing more meanwhile. Its members hold nominations
// for the freed nodes; when a later attempt fails, Effects.Nominated says to
// clear them.
//
// It is called before the evictions, so that no victim's deletion can be
// seen before the gang waits for it; false means the attempt is over and
// nothing may be evicted for it. A victim whose eviction then fails is
// given up with VictimGone.
func (x *Index) Preempted(key Key, attempt uint64, victims []types.UID, wait time.Duration, now time.Time) (Effects, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok || g.attempt != attempt || g.admitted || g.running() {
		return Effects{}, false
	}
	var e Effects
	g.fail(&e, OutcomePreempting, 0, "", now)
	g.victims = make(map[types.UID]struct{}, len(victims))
	for _, uid := range victims {
		g.victims[uid] = struct{}{}
		x.victimOf[uid] = key
	}
	g.victimsDeadline, g.nominated = now.Add(wait), true
	g.afterChange(&e, now)
	x.track(key, &e)
	return e, true
}

// VictimGone records that a pod was deleted, or that its eviction failed:
// the gang no longer waits for it. When it was the last victim a gang
// waited for, the gang is returned with Activate set.
func (x *Index) VictimGone(uid types.UID, now time.Time) (Key, Effects) {
	x.mu.Lock()
	defer x.mu.Unlock()
	key, ok := x.victimOf[uid]
	if !ok {
		return Key{}, Effects{}
	}
	delete(x.victimOf, uid)
	g, ok := x.gangs[key]
	if !ok {
		return key, Effects{}
	}
	delete(g.victims, uid)
	var e Effects
	g.afterChange(&e, now)
	if len(g.victims) == 0 {
		e.Activate, g.victimsGone = true, now
	}
	return key, e
}

// PreemptionCooldown is how long after its last victim went a gang does not
// preempt again. The informers that tell the plugin a victim is gone can be
// ahead of the scheduler's cache: an attempt made at once may still see the
// victim on its node. It then fails as any attempt does, and the capacity
// the cache frees wakes it (WakeOnCapacity), rather than evicting more.
const PreemptionCooldown = 3 * time.Second

// MayPreempt reports whether the gang may evict now: not while it waits for
// its victims, nor within PreemptionCooldown after they went.
func (x *Index) MayPreempt(key Key, now time.Time) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.gangs[key]
	if !ok {
		return true
	}
	if len(g.victims) > 0 && now.Before(g.victimsDeadline) {
		return false
	}
	return g.victimsGone.IsZero() || now.Sub(g.victimsGone) >= PreemptionCooldown
}

// Release rejects the members waiting at Permit without failing the gang:
// its Workload was deleted, so the attempt cannot be admitted, but that is
// no failure of the gang and starts no backoff.
func (x *Index) Release(key Key, now time.Time) Effects {
	x.mu.Lock()
	defer x.mu.Unlock()
	g, ok := x.gangs[key]
	if !ok || g.admitted || g.running() {
		return Effects{}
	}
	var e Effects
	for uid, m := range g.members {
		if m.state == memberReserved {
			g.setState(m, memberRejected)
			e.Reject = append(e.Reject, uid)
		}
	}
	g.attempt++
	g.attemptStart = time.Time{}
	g.afterChange(&e, now)
	return e
}

// setMinCount gives the gang the quorum its Workload or PodGroup has now.
// A PodGroup's minMember can change: while an attempt holds reservations it
// keeps the quorum it started with, and the change applies to the next one.
func (g *gang) setMinCount(minCount int) {
	if minCount > 0 && (g.minCount == 0 || g.counts.Reserved == 0) {
		g.minCount = minCount
	}
}

// buryLocked remembers a deleted member and forgets those deleted more than
// tombstoneTTL ago.
func (x *Index) buryLocked(uid types.UID, now time.Time) {
	x.deleted[uid] = struct{}{}
	x.tombstones = append(x.tombstones, tombstone{uid: uid, at: now})
	n := 0
	for n < len(x.tombstones) && now.Sub(x.tombstones[n].at) > tombstoneTTL {
		delete(x.deleted, x.tombstones[n].uid)
		n++
	}
	if n > 0 {
		x.tombstones = append(x.tombstones[:0], x.tombstones[n:]...)
	}
}

// gangLocked returns the gang of key, creating it, queued at the creation of
// its first member pod, if it has no members yet.
func (x *Index) gangLocked(key Key, first *v1.Pod) *gang {
	g, ok := x.gangs[key]
	if !ok {
		g = &gang{key: key, storeKey: StoreKey(key, x.cfg.SchedulerName), members: map[types.UID]*member{}, clock: &clock{}, priorities: map[int32]int{}}
		g.clock.priority.Store(corev1helpers.PodPriority(first))
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
	if g := x.gangs[key]; g != nil {
		for uid := range g.victims {
			delete(x.victimOf, uid)
		}
	}
	delete(x.waiters, key)
	delete(x.gangs, key)
	x.clocks.Delete(key)
	wk := key.WorkloadKey()
	delete(x.byWorkload[wk], key)
	if len(x.byWorkload[wk]) == 0 {
		delete(x.byWorkload, wk)
	}
}
