package gang

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Placement is the topology domain one attempt of a gang places its members
// in: chosen once, when the attempt's first member is tried, and kept until
// the attempt ends. The plugin chooses it; the index keeps it and decides
// what a failure in it means for the next attempt.
type Placement struct {
	// Domain is the chosen domain as users read it ("rack=r1"); empty for
	// anywhere.
	Domain string
	// Nodes are the domain's nodes, the members' only candidates; nil for
	// every node. Shared by the attempt's members: never modified.
	Nodes sets.Set[string]
	// Level is the preferred key the domain is of, an index into the
	// gang's preferred keys; -1 when the domain is not a preferred one
	// (the required domain alone, or anywhere).
	Level int
	// Unfit, when not empty, says why no domain can hold the gang: the
	// attempt fails without reserving anything.
	Unfit string
	// Note says why a preference was not met, for the user; empty when it
	// was or there was none.
	Note string
}

// Preferred reports whether the placement is in a domain of a preferred
// key: when the attempt in it does not fit, the next falls back a level.
func (p *Placement) Preferred() bool { return p != nil && p.Level >= 0 }

// describe is what the user is told of the placement, to tell once per
// change.
func (p *Placement) describe() string {
	switch {
	case p.Unfit != "":
		return p.Unfit
	case p.Note != "":
		return p.Note + "|" + p.Domain
	}
	return p.Domain
}

// Placement returns the placement chosen for the gang's current attempt, or
// nil when none is yet, with the attempt and the first preferred level a
// choice may use: levels before it failed in earlier attempts.
func (x *Index) Placement(key Key) (p *Placement, attempt uint64, fromLevel int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.gangs[key]
	if !ok {
		return nil, 0, 0
	}
	if g.placementAttempt == g.attempt {
		p = g.placement
	}
	return p, g.attempt, g.fallback
}

// Place records the placement of the gang's attempt, chosen for pod. When
// the attempt already has one (another member chose first) that one is
// returned; when the attempt is over, or pod was deleted, p is returned and
// nothing recorded. A pod the informer has not delivered yet is added, as
// Reserve adds it: the queue can be ahead of the handler, and a choice not
// recorded would let the attempt's next member choose another domain.
// changed reports a placement the user has not been told of: a domain, or a
// reason, other than the gang's last.
func (x *Index) Place(key Key, attempt uint64, pod *v1.Pod, p *Placement) (chosen *Placement, changed bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, gone := x.deleted[pod.UID]; gone {
		return p, false
	}
	g := x.gangLocked(key, pod)
	if _, known := g.members[pod.UID]; !known {
		m := &member{counted: x.Counted(pod)}
		m.setPod(pod)
		g.members[pod.UID] = m
		g.count(m, +1)
	}
	if g.attempt != attempt {
		return p, false
	}
	if g.placementAttempt == attempt && g.placement != nil {
		return g.placement, false
	}
	g.placement, g.placementAttempt = p, attempt
	if d := p.describe(); d != g.placed {
		g.placed, changed = d, true
	}
	return p, changed
}

// fallBack is the part of a failed attempt that concerns its placement: an
// attempt in a preferred domain that did not fit moves the gang's next
// choice on to the next level, at once (it reports true: no backoff). Any
// other failure keeps the level and the backoff.
func (g *gang) fallBack(outcome Outcome) bool {
	if outcome != OutcomeUnfit || g.placementAttempt != g.attempt || !g.placement.Preferred() {
		return false
	}
	g.fallback = g.placement.Level + 1
	return true
}
