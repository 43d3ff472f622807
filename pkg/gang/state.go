package gang

import (
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
)

// Phase is where a gang stands in its current attempt. Every gang goes
//
//	Assembling ──(minCount live members)──▶ Queued ──(first Reserve)──▶ Attempting
//	Attempting ──(quorum at Permit, or a bound member completes it)──▶ Admitted
//	Admitted ──(minCount members bound)──▶ Running
//	Attempting ──(Fail: unfit, timeout, member lost, node deleted)──▶ BackingOff ──(backoff over)──▶ Queued
//	Admitted ──(a bind fails)──▶ Queued (no backoff: bindings cannot be undone)
//	any ──(live members drop below minCount)──▶ Assembling
//
// A phase is derived from the counts and the attempt's flags, never stored,
// so it cannot disagree with them.
type Phase uint8

const (
	// PhaseAssembling: fewer than minCount live members exist.
	PhaseAssembling Phase = iota
	// PhaseQueued: enough members, none holds a reservation of this attempt.
	PhaseQueued
	// PhaseBackingOff: the last attempt failed; the gang waits before the next.
	PhaseBackingOff
	// PhaseAttempting: members hold reservations and wait at Permit.
	PhaseAttempting
	// PhaseAdmitted: the attempt reached its quorum; members are binding.
	PhaseAdmitted
	// PhaseRunning: minCount live members are bound.
	PhaseRunning
	// PhasePreempting: the gang evicted lower-priority pods to fit and waits
	// for them to terminate; it evicts nothing more meanwhile.
	PhasePreempting
)

var phaseNames = [...]string{"Assembling", "Queued", "BackingOff", "Attempting", "Admitted", "Running", "Preempting"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "Unknown"
}

// Counts is a snapshot of one gang's live members: those this scheduler
// places (its schedulerName) that are neither terminating nor finished.
type Counts struct {
	// Present is the number of live members.
	Present int
	// Reserved is the number of live reservations of the current attempt:
	// members reserved and not rejected.
	Reserved int
	// Bound is the number of live members bound to a node.
	Bound int
}

// Placed is the number of live members that hold a node: reserved or bound.
func (c Counts) Placed() int { return c.Reserved + c.Bound }

// Outcome is the result of a gang's attempt, as the metrics label it.
type Outcome string

// Outcomes of an attempt.
const (
	OutcomeAdmitted       Outcome = "admitted"
	OutcomeUnfit          Outcome = "rejected_in_postfilter"
	OutcomePermitTimeout  Outcome = "permit_timeout"
	OutcomeBindFailure    Outcome = "bind_failure"
	OutcomeMemberRejected Outcome = "member_rejected"
	OutcomeMemberDeleted  Outcome = "member_deleted"
	OutcomeNodeDeleted    Outcome = "node_deleted"
	// OutcomePreempting: the attempt evicted lower-priority pods and ends;
	// the next one starts when they are gone.
	OutcomePreempting Outcome = "preempting"
	// OutcomePreempted: the gang was a victim of a higher-priority gang.
	OutcomePreempted Outcome = "preempted"
	// OutcomeMinResources: the gang's minResources (a PodGroup's) exceed
	// the cluster's free capacity: the attempt ended before any Reserve.
	OutcomeMinResources Outcome = "min_resources"
)

// Effects is what a transition asks the plugin to carry out. The zero value
// asks for nothing. Slices are only allocated on an admission or a rollback,
// never on the scheduling path of a gang that assembles or waits.
type Effects struct {
	// Counts and Phase are the gang's after the transition.
	Counts Counts
	Phase  Phase
	// Attempt is the gang's current attempt number after the transition.
	Attempt uint64

	// Activate: the gang's members without a node should be judged again
	// (the gang reached its quorum of live members).
	Activate bool
	// StartedAttempt: this transition started an attempt (its first
	// reservation); the plugin arms the attempt's deadline.
	StartedAttempt bool
	// Admitted: this transition admitted the attempt; Allow lists the
	// members waiting at Permit that go to binding, and Waited is how long
	// the attempt took since its first reservation.
	Admitted bool
	Allow    []types.UID
	Waited   time.Duration
	// Eventful: the admitted attempt followed a failed one, or the user was
	// told the gang waits (Index.Reported); either way the user should hear
	// how it ended.
	Eventful bool
	// RolledBack: this transition failed the attempt with Outcome. Reject
	// lists the members waiting at Permit to reject (the pod the transition
	// was called for is never in it: its own callback says so). Backoff is
	// how long the gang now waits; Waited as above.
	RolledBack bool
	Outcome    Outcome
	Reject     []types.UID
	Backoff    time.Duration
	// Completed: minCount members are bound for the first time, after an
	// attempt this index admitted; Took is the time since the gang's first
	// member was created. A gang only seen bound (placed by another replica,
	// or before a restart) never completes here: a standby replica, whose
	// informers run too, must not measure the leader's gangs again.
	Completed bool
	Took      time.Duration
	// Nominated: the attempt that failed had nominated nodes for its
	// members (a preemption); the plugin clears those nominations.
	Nominated bool
	// FellBack: the attempt that failed was in a preferred topology domain;
	// the next one chooses at the next level, at once (no backoff), so the
	// plugin wakes the gang.
	FellBack bool
}

type memberState uint8

const (
	// memberPending: exists, holds no node.
	memberPending memberState = iota
	// memberReserved: holds a live reservation of attempt member.attempt.
	memberReserved
	// memberRejected: held a reservation that a rollback rejected; it keeps
	// its node until its Unreserve, which then is no new failure.
	memberRejected
	// memberBound: bound to a node.
	memberBound
	// memberGone: terminating or finished; it counts for nothing.
	memberGone
)

type member struct {
	pod   *v1.Pod
	state memberState
	// counted: the member is placed by this scheduler and counts toward the
	// quorum (see Index.ObservePod).
	counted bool
	// attempt is the attempt the member's reservation belongs to.
	attempt uint64
	// node is the node of the member's reservation or binding.
	node string
	// reason is the last waiting reason reported for this member.
	reason string
	// priority and neverPreempts are the pod's, as the gang weighs them.
	priority      int32
	neverPreempts bool
}

// setPod records what the gang weighs of a member's pod. Priority and
// preemptionPolicy are immutable, so this is done once, when the member is
// first seen.
func (m *member) setPod(pod *v1.Pod) {
	m.pod = pod
	m.priority = corev1helpers.PodPriority(pod)
	m.neverPreempts = pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == v1.PreemptNever
}

func (m *member) live() bool { return m.counted && m.state != memberGone }

// Gone reports whether a pod no longer takes part in its gang: it is being
// deleted (a terminating pod may hold its node for a long time, but it will
// never run again and a binding of it is refused), or it finished.
func Gone(pod *v1.Pod) bool {
	return pod.DeletionTimestamp != nil || pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
}

type gang struct {
	key Key
	// storeKey is StoreKey(key, schedulerName), kept so the hot path does
	// not build it.
	storeKey string
	members  map[types.UID]*member
	counts   Counts
	clock    *clock
	// minCount is the quorum the plugin last gave; 0 while unknown.
	minCount int
	// attempt numbers the gang's attempts; a rollback ends the current one.
	attempt uint64
	// attemptStart is when the current attempt reserved its first member.
	attemptStart time.Time
	// admitted is set when the current attempt reached its quorum.
	admitted bool
	// assembled is set once the live members reached minCount and cleared
	// when they drop below, so the quorum wakes the gang once.
	assembled bool
	// firstSeen is the creation of the gang's first member; complete is set
	// once minCount members were bound; admittedHere once an attempt of this
	// index was admitted.
	firstSeen    time.Time
	complete     bool
	admittedHere bool
	// reason is the last reason reported for the whole gang.
	reason string
	// priorities counts the live members by priority, and neverPreempts
	// those whose preemptionPolicy is Never: one gang is one priority.
	priorities    map[int32]int
	neverPreempts int
	// victims are the pods this gang's preemption evicted that have not
	// gone yet; until they go (or victimsDeadline passes) the gang waits and
	// evicts nothing more.
	victims         map[types.UID]struct{}
	victimsDeadline time.Time
	// victimsGone is when the last victim of the gang's preemption went.
	victimsGone time.Time
	// nominated is set while members hold nominations from a preemption.
	nominated bool
	// failures counts the gang's failed attempts; reported is set once the
	// user was told the gang waits (see Index.Reported).
	failures int
	reported bool
	// placement is the topology domain chosen for attempt placementAttempt;
	// placed describes the last one the user was told of. fallback is the
	// first preferred level the next choice may use (see fallBack).
	placement        *Placement
	placementAttempt uint64
	placed           string
	fallback         int
}

func (g *gang) phase(now time.Time) Phase {
	switch {
	case g.minCount > 0 && g.counts.Bound >= g.minCount:
		return PhaseRunning
	case g.admitted:
		return PhaseAdmitted
	case g.counts.Reserved > 0:
		return PhaseAttempting
	case len(g.victims) > 0 && now.Before(g.victimsDeadline):
		return PhasePreempting
	case g.clock.backoffUntil.Load() > now.UnixNano():
		return PhaseBackingOff
	case g.minCount > 0 && g.counts.Present < g.minCount:
		return PhaseAssembling
	}
	return PhaseQueued
}

// highestPriority and lowestPriority are over the live members; zero for a
// gang without any.
func (g *gang) highestPriority() int32 {
	first, highest := true, int32(0)
	for p := range g.priorities {
		if first || p > highest {
			first, highest = false, p
		}
	}
	return highest
}

func (g *gang) lowestPriority() int32 {
	first, lowest := true, int32(0)
	for p := range g.priorities {
		if first || p < lowest {
			first, lowest = false, p
		}
	}
	return lowest
}

func (g *gang) running() bool { return g.minCount > 0 && g.counts.Bound >= g.minCount }

func (g *gang) effects(now time.Time) Effects {
	return Effects{Counts: g.counts, Phase: g.phase(now), Attempt: g.attempt}
}

// setState moves a member to a new state and keeps the counts in step.
func (g *gang) setState(m *member, s memberState) {
	g.count(m, -1)
	m.state = s
	g.count(m, +1)
}

func (g *gang) count(m *member, delta int) {
	if !m.live() {
		return
	}
	g.priorities[m.priority] += delta
	if g.priorities[m.priority] <= 0 {
		delete(g.priorities, m.priority)
	}
	if len(g.priorities) > 0 {
		g.clock.priority.Store(g.highestPriority())
	}
	if m.neverPreempts {
		g.neverPreempts += delta
	}
	g.counts.Present += delta
	switch m.state {
	case memberReserved:
		g.counts.Reserved += delta
	case memberBound:
		g.counts.Bound += delta
	}
}

// afterChange applies the rules that follow any change of the counts: the
// quorum of live members wakes the gang once, and minCount bound members
// complete it.
func (g *gang) afterChange(e *Effects, now time.Time) {
	if g.minCount > 0 {
		switch {
		case g.counts.Present >= g.minCount && !g.assembled:
			g.assembled, e.Activate = true, true
		case g.counts.Present < g.minCount:
			g.assembled = false
		}
		if g.counts.Bound >= g.minCount && !g.complete && g.admittedHere {
			g.complete, e.Completed, e.Took = true, true, sinceOrZero(now, g.firstSeen)
		}
		if g.admitted && g.running() {
			// The admitted attempt is done: its members run. Members that come
			// later join a running gang, or, once it has fewer than minCount
			// live members bound (they terminate, they are replaced), a new
			// attempt that needs its own quorum.
			g.admitted, g.attemptStart = false, time.Time{}
			g.attempt++
		}
	}
	e.Counts, e.Phase, e.Attempt = g.counts, g.phase(now), g.attempt
}

// Witness is the plugin's freshest view of the members, asked only when an
// attempt is about to be admitted (once per attempt). The index is fed by
// an informer handler that can lag behind the scheduler's queue.
type Witness interface {
	// Waiting reports whether a reserved member still waits at Permit. One
	// the framework rejected behind the plugin's back (its Permit timer, a
	// preemption) has left Permit and not yet run its Unreserve.
	Waiting(uid types.UID) bool
	// Live reports whether a bound member still exists and is neither
	// terminating nor finished, as the informer's store has it now.
	Live(pod *v1.Pod) bool
}

// tryAdmit admits the current attempt when its live reservations and bound
// members reach minCount. Before it does, it asks the witness about each
// member it counts: a bound member that is gone by now is marked gone (the
// informer will say so too, later), and when fewer than minCount remain the
// attempt waits; a reserved member no longer waiting at Permit fails the
// attempt, with backoff.
func (g *gang) tryAdmit(e *Effects, self types.UID, w Witness, backoff time.Duration, now time.Time) {
	if g.admitted || g.minCount == 0 || g.counts.Placed() < g.minCount {
		return
	}
	if w != nil {
		for _, m := range g.members {
			if m.state == memberBound && m.live() && !w.Live(m.pod) {
				g.setState(m, memberGone)
			}
		}
		if g.counts.Placed() < g.minCount {
			return
		}
	}
	var allow []types.UID
	for uid, m := range g.members {
		if m.state != memberReserved || !m.counted || uid == self {
			continue
		}
		if w != nil && !w.Waiting(uid) {
			g.fail(e, OutcomeMemberRejected, backoff, self, now)
			return
		}
		allow = append(allow, uid)
	}
	g.admitted, g.admittedHere, g.fallback = true, true, 0
	e.Admitted, e.Allow, e.Waited = true, allow, sinceOrZero(now, g.attemptStart)
	e.Eventful = g.failures > 0 || g.reported
}

// fail ends the current attempt: every live reservation is marked rejected
// (the plugin rejects those waiting at Permit, except self), the attempt
// number moves on, and the gang queues again at now, after backoff. All of
// it happens under the index's lock, so no member can reach Permit between
// the rejection and the backoff.
func (g *gang) fail(e *Effects, outcome Outcome, backoff time.Duration, self types.UID, now time.Time) {
	// A gang with bound members must complete as soon as it can: bindings
	// cannot be undone. So must one whose admitted attempt lost a binding.
	if !g.admitted && g.fallBack(outcome) {
		e.FellBack, backoff = true, 0
	}
	if g.admitted || g.counts.Bound > 0 {
		backoff = 0
	}
	for uid, m := range g.members {
		if m.state == memberReserved {
			g.setState(m, memberRejected)
			if uid != self {
				e.Reject = append(e.Reject, uid)
			}
		}
	}
	g.failures++
	e.RolledBack, e.Outcome, e.Backoff = true, outcome, backoff
	e.Waited = sinceOrZero(now, g.attemptStart)
	if len(g.victims) == 0 && g.nominated {
		// The attempt after the preemption failed: the nodes held for it go.
		e.Nominated, g.nominated = true, false
	}
	g.attempt++
	g.attemptStart, g.admitted = time.Time{}, false
	g.clock.queued.Store(now.UnixNano())
	if backoff > 0 {
		g.clock.backoffUntil.Store(now.Add(backoff).UnixNano())
	}
}

func sinceOrZero(now, t time.Time) time.Duration {
	if t.IsZero() || now.Before(t) {
		return 0
	}
	return now.Sub(t)
}
