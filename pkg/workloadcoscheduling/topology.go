package workloadcoscheduling

import (
	"context"
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	policy "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// Topology-aware placement: a gang whose Workload names topology keys is
// placed inside one domain (the nodes sharing a label value), chosen once
// per attempt when its first member is tried (placeGang). The choice
// simulates the gang on the cycle's snapshot: the profile's own PreFilter
// and Filter plugins say on which nodes a member fits at all, and
// NodeResourcesFit's arithmetic (free allocatable over the member's
// requests, and the node's pod limit) how many members each of those nodes
// takes. The members are assumed to have the shape of the member tried.

// simulationKey marks the cycle state of a placement simulation: the
// plugin's PreFilter, run by the simulation, then chooses nothing.
const simulationKey fwk.StateKey = Name + "/placement-simulation"

type simulationMarker struct{}

func (simulationMarker) Clone() fwk.StateData { return simulationMarker{} }

func simulating(state fwk.CycleState) bool {
	if state == nil {
		return false
	}
	_, err := state.Read(simulationKey)
	return err == nil
}

// placeGang restricts a member of a gang with a topology constraint to the
// domain of its attempt, choosing the domain when the member is the
// attempt's first.
func (pl *WorkloadCoscheduling) placeGang(ctx context.Context, pod *v1.Pod, m membership) (*fwk.PreFilterResult, *fwk.Status) {
	p, attempt, from := pl.index.Placement(m.key)
	if p == nil {
		p = pl.choosePlacement(ctx, pod, m, from)
		var changed bool
		if p, changed = pl.index.Place(m.key, attempt, pod, p); changed {
			pl.tellPlacement(ctx, m, p)
		}
	}
	if p.Unfit != "" {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, p.Unfit)
	}
	if p.Nodes == nil {
		return nil, nil
	}
	return &fwk.PreFilterResult{NodeNames: p.Nodes}, nil
}

func (pl *WorkloadCoscheduling) tellPlacement(ctx context.Context, m membership, p *gang.Placement) {
	klog.FromContext(ctx).V(3).Info("Gang placement chosen", "gang", m.key, "topology", m.policy.Topology,
		"domain", p.Domain, "unfit", p.Unfit, "note", p.Note)
	switch {
	case p.Unfit != "":
		pl.tellWorkload(m.key, v1.EventTypeWarning, ReasonTopologyUnfit, fmt.Sprintf("gang %s stays pending: %s", m.key, p.Unfit))
	case p.Domain != "" && p.Note != "":
		pl.tellWorkload(m.key, v1.EventTypeNormal, ReasonTopologyPlaced, fmt.Sprintf("gang %s goes in %s: %s", m.key, p.Domain, p.Note))
	case p.Domain != "":
		pl.tellWorkload(m.key, v1.EventTypeNormal, ReasonTopologyPlaced, fmt.Sprintf("gang %s goes in %s", m.key, p.Domain))
	case p.Note != "":
		pl.tellWorkload(m.key, v1.EventTypeNormal, ReasonTopologyPlaced, fmt.Sprintf("gang %s goes across domains: %s", m.key, p.Note))
	}
}

// choosePlacement picks the attempt's domain: the tightest domain with room
// for every member still to place, of the first preferred key that has one
// (from fromLevel on), else of the required key, else anywhere. Members
// already bound pin the domain to theirs.
func (pl *WorkloadCoscheduling) choosePlacement(ctx context.Context, pod *v1.Pod, m membership, fromLevel int) *gang.Placement {
	t := m.policy.Topology
	nodes, err := pl.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return &gang.Placement{Level: -1}
	}
	need := m.minCount() - pl.index.Counts(m.key).Bound
	d := &domains{nodes: nodes, need: need, room: pl.roomPerNode(ctx, pod, nodes, t, need), pins: pl.boundNodes(m.key)}
	var notes []string
	for level := fromLevel; level < len(t.Preferred); level++ {
		p, why := d.best(t.Required, t.Preferred[level])
		if p != nil {
			p.Level, p.Note = level, strings.Join(notes, "; ")
			return p
		}
		notes = append(notes, why)
	}
	note := strings.Join(notes, "; ")
	if t.Required == "" {
		return &gang.Placement{Level: -1, Note: note}
	}
	p, why := d.best("", t.Required)
	if p == nil {
		return &gang.Placement{Level: -1, Unfit: why}
	}
	p.Level, p.Note = -1, note
	return p
}

// roomPerNode is how many members each node takes, at most need; 0 for a
// node without the constraint's keys, which no domain includes.
func (pl *WorkloadCoscheduling) roomPerNode(ctx context.Context, pod *v1.Pod, nodes []fwk.NodeInfo, t *workloadref.Topology, need int) []int {
	room := make([]int, len(nodes))
	runner, ok := pl.handle.(preFilterRunner)
	if !ok || need <= 0 {
		return room
	}
	state := framework.NewCycleState()
	state.Write(simulationKey, simulationMarker{})
	result, status, _ := runner.RunPreFilterPlugins(ctx, state, pod)
	if !status.IsSuccess() {
		return room
	}
	req := requestOf(pod)
	for i, n := range nodes {
		node := n.Node()
		if !hasTopologyKey(node, t) || (!result.AllNodes() && !result.NodeNames.Has(node.Name)) {
			continue
		}
		// Without the nominated pods: after a preemption, the gang's own
		// members are nominated to the nodes it freed.
		if pl.handle.RunFilterPlugins(ctx, state, pod, n).IsSuccess() {
			room[i] = req.room(n, need)
		}
	}
	return room
}

func hasTopologyKey(node *v1.Node, t *workloadref.Topology) bool {
	if t.Required != "" {
		_, ok := node.Labels[t.Required]
		return ok
	}
	for _, key := range t.Preferred {
		if _, ok := node.Labels[key]; ok {
			return true
		}
	}
	return false
}

// boundNodes are the nodes of the gang's bound members.
func (pl *WorkloadCoscheduling) boundNodes(key gang.Key) []*v1.Node {
	bound, _, _ := pl.index.Members(key)
	var nodes []*v1.Node
	for _, pod := range bound {
		if n, err := pl.handle.SnapshotSharedLister().NodeInfos().Get(pod.Spec.NodeName); err == nil {
			nodes = append(nodes, n.Node())
		}
	}
	return nodes
}

// memberRequest is what one member takes of a node, as NodeResourcesFit
// counts it.
type memberRequest struct {
	milliCPU, memory, ephemeral int64
	scalar                      map[v1.ResourceName]int64
	// onePerNode: a host port, a required anti-affinity or a hard spread
	// constraint; counted as one member per node (the simulation does not
	// place the members against each other).
	onePerNode bool
}

func requestOf(pod *v1.Pod) memberRequest {
	r := memberRequest{}
	for name, q := range resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{}) {
		switch name {
		case v1.ResourceCPU:
			r.milliCPU = q.MilliValue()
		case v1.ResourceMemory:
			r.memory = q.Value()
		case v1.ResourceEphemeralStorage:
			r.ephemeral = q.Value()
		case v1.ResourcePods:
		default:
			if r.scalar == nil {
				r.scalar = map[v1.ResourceName]int64{}
			}
			r.scalar[name] = q.Value()
		}
	}
	a := pod.Spec.Affinity
	r.onePerNode = a != nil && a.PodAntiAffinity != nil && len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0
	for _, c := range pod.Spec.TopologySpreadConstraints {
		r.onePerNode = r.onePerNode || c.WhenUnsatisfiable == v1.DoNotSchedule
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			r.onePerNode = r.onePerNode || p.HostPort > 0
		}
	}
	return r
}

// room is how many members fit on a node the filters passed: at least one,
// at most need.
func (r *memberRequest) room(n fwk.NodeInfo, need int) int {
	alloc, used := n.GetAllocatable(), n.GetRequested()
	free := fitsIn(need, alloc.GetMilliCPU()-used.GetMilliCPU(), r.milliCPU)
	free = fitsIn(free, alloc.GetMemory()-used.GetMemory(), r.memory)
	free = fitsIn(free, alloc.GetEphemeralStorage()-used.GetEphemeralStorage(), r.ephemeral)
	for name, q := range r.scalar {
		free = fitsIn(free, alloc.GetScalarResources()[name]-used.GetScalarResources()[name], q)
	}
	free = min(free, alloc.GetAllowedPodNumber()-len(n.GetPods()))
	if r.onePerNode {
		free = min(free, 1)
	}
	return max(free, 1)
}

func fitsIn(n int, free, each int64) int {
	if each <= 0 {
		return n
	}
	return min(n, int(max(free, 0)/each))
}

// domains groups the snapshot's nodes by topology label values.
type domains struct {
	nodes []fwk.NodeInfo
	room  []int
	need  int
	pins  []*v1.Node
}

// domainID is a domain's label values: of the key, and of the outer key
// when there is one. Built from the labels' own strings, it allocates
// nothing per node.
type domainID struct{ outer, value string }

// best is the tightest domain of key (inside one domain of outer, when
// given) with room for need members, or nil and why there is none.
func (d *domains) best(outer, key string) (*gang.Placement, string) {
	idOf := func(node *v1.Node) (domainID, bool) {
		value, ok := node.Labels[key]
		if !ok || outer == "" {
			return domainID{value: value}, ok
		}
		o, ok := node.Labels[outer]
		return domainID{outer: o, value: value}, ok
	}
	name := func(id domainID) string {
		if outer == "" {
			return key + "=" + id.value
		}
		return outer + "=" + id.outer + ", " + key + "=" + id.value
	}
	// Members already bound pin the domain.
	var pinned *domainID
	for _, n := range d.pins {
		id, ok := idOf(n)
		if !ok || (pinned != nil && id != *pinned) {
			return nil, fmt.Sprintf("the gang's bound members are not inside one %s domain", key)
		}
		pinned = &id
	}
	room := map[domainID]int{}
	for i, n := range d.nodes {
		if id, ok := idOf(n.Node()); ok && (pinned == nil || id == *pinned) {
			room[id] += d.room[i]
		}
	}
	var best *domainID
	bestRoom := 0
	for id, r := range room {
		if r >= d.need && (best == nil || r < bestRoom || (r == bestRoom && name(id) < name(*best))) {
			best, bestRoom = &id, r
		}
	}
	if best == nil && pinned != nil && d.need <= 0 {
		best = pinned
	}
	if best == nil {
		named := make(map[string]int, len(room))
		for id, r := range room {
			named[name(id)] = r
		}
		return nil, fmt.Sprintf("no %s domain has room for %d members%s", key, d.need, summarize(named))
	}
	nodes := sets.New[string]()
	for _, n := range d.nodes {
		if id, ok := idOf(n.Node()); ok && id == *best {
			nodes.Insert(n.Node().Name)
		}
	}
	return &gang.Placement{Domain: name(*best), Nodes: nodes}, ""
}

// summarize lists the roomiest domains: ": rack=r0 2, rack=r1 2".
func summarize(room map[string]int) string {
	if len(room) == 0 {
		return ": no node has the label"
	}
	ids := make([]string, 0, len(room))
	for id := range room {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if room[ids[i]] != room[ids[j]] {
			return room[ids[i]] > room[ids[j]]
		}
		return ids[i] < ids[j]
	})
	const shown = 5
	parts := make([]string, 0, shown+1)
	for i, id := range ids {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(ids)-shown))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d", id, room[id]))
	}
	return ": " + strings.Join(parts, ", ")
}

// planInDomains plans a preemption for a gang with a required topology key:
// inside each domain of the key (only the domain of its bound members, when
// it has some), and returns the least costly plan, or nil when none would
// make room; candidates is false when no domain has a pod to evict.
func (p *planner) planInDomains(pdbs []*policy.PodDisruptionBudget, key string, pins []*v1.Node) (best *preemptionPlan, candidates bool) {
	byDomain := map[string][]fwk.NodeInfo{}
	for _, n := range p.nodes {
		if value, ok := n.Node().Labels[key]; ok {
			byDomain[value] = append(byDomain[value], n)
		}
	}
	if len(pins) > 0 {
		value, ok := pins[0].Labels[key]
		for _, pin := range pins[1:] {
			ok = ok && pin.Labels[key] == value
		}
		if !ok {
			return nil, false
		}
		byDomain = map[string][]fwk.NodeInfo{value: byDomain[value]}
	}
	values := make([]string, 0, len(byDomain))
	for value := range byDomain {
		values = append(values, value)
	}
	sort.Strings(values)
	all := p.nodes
	defer func() { p.nodes = all }()
	for _, value := range values {
		p.nodes = byDomain[value]
		units := p.units(pdbs)
		if len(units) == 0 {
			continue
		}
		candidates = true
		plan := p.plan(units)
		if plan != nil && len(plan.units) == 0 {
			// Fits without evicting: the caller sees the cluster changed.
			return plan, true
		}
		if plan != nil && (best == nil || cheaper(plan, best)) {
			best = plan
		}
	}
	return best, candidates
}

// cheaper orders plans as victims are ordered: the lower highest priority
// evicted first, then fewer pods protected by a budget, then fewer pods.
func cheaper(a, b *preemptionPlan) bool {
	ca, cb := a.cost(), b.cost()
	if ca.priority != cb.priority {
		return ca.priority < cb.priority
	}
	if ca.pdbViolations != cb.pdbViolations {
		return ca.pdbViolations < cb.pdbViolations
	}
	return ca.pods < cb.pods
}

type planCost struct {
	priority            int32
	pdbViolations, pods int
}

func (p *preemptionPlan) cost() planCost {
	var c planCost
	for i, u := range p.units {
		if i == 0 || u.priority > c.priority {
			c.priority = u.priority
		}
		c.pdbViolations += u.pdbViolations
		c.pods += len(u.pods)
	}
	return c
}
