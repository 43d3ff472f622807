package workloadcoscheduling

import (
	"context"
	"reflect"
	"sort"

	v1 "k8s.io/api/core/v1"
	policy "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// victimUnit is what one choice of the planner evicts: a pod alone, or a
// whole gang (its bound members, whoever placed them, and its members
// waiting at Permit, which are rejected rather than evicted). A gang is
// never evicted in part: a running gang left with fewer than minCount
// members holds nodes for a job that cannot run.
type victimUnit struct {
	gang     *gang.Key
	attempt  uint64
	pods     []*v1.Pod
	reserved []*v1.Pod
	priority int32
	// pdbViolations is how many of its pods a PodDisruptionBudget protects
	// now (no disruption allowed).
	pdbViolations int
}

func (u *victimUnit) isGang() bool { return u.gang != nil }

// lessCostly orders the choices: reservations that evict nothing first,
// then lower priority, then fewer PodDisruptionBudget violations, then fewer
// pods, then plain pods before gangs.
func lessCostly(a, b *victimUnit) bool {
	if ra, rb := len(a.pods) == 0, len(b.pods) == 0; ra != rb {
		return ra
	}
	if a.priority != b.priority {
		return a.priority < b.priority
	}
	if a.pdbViolations != b.pdbViolations {
		return a.pdbViolations < b.pdbViolations
	}
	if len(a.pods) != len(b.pods) {
		return len(a.pods) < len(b.pods)
	}
	return !a.isGang() && b.isGang()
}

// preemptionPlan is a whole gang placed after evicting units.
type preemptionPlan struct {
	units []*victimUnit
	// placement is the node of each member to place, the preemptor first.
	placement []nominee
}

// victims are the pods the plan evicts.
func (p *preemptionPlan) victims() []types.UID {
	var uids []types.UID
	for _, u := range p.units {
		for _, pod := range u.pods {
			uids = append(uids, pod.UID)
		}
	}
	return uids
}

type nominee struct {
	pod  *v1.Pod
	node string
}

// planner simulates a gang's placement on clones of the scheduling cycle's
// snapshot. Each member shape gets its own filter state: the preemptor's
// cycle state, cloned, for members of the same shape; a state from the
// profile's PreFilter plugins for others.
type planner struct {
	ctx    context.Context
	logger klog.Logger
	pl     *WorkloadCoscheduling
	nodes  []fwk.NodeInfo
	// members to place, the preemptor first, with their filter states.
	members []*v1.Pod
	states  []fwk.CycleState
	// released are pods to take off the nodes before anything: the gang's
	// own reservations, which the preemption gives up and places anew.
	released map[types.UID]bool
	below    int32
}

// preFilterRunner is the part of the scheduler's framework that runs
// PreFilter for a member whose shape differs from the preemptor's. The
// framework handle the plugin gets implements it.
type preFilterRunner interface {
	RunPreFilterPlugins(ctx context.Context, state fwk.CycleState, pod *v1.Pod) (*fwk.PreFilterResult, *fwk.Status, sets.Set[string])
}

// sameShape reports whether two pods ask the filters the same: resources,
// node selection, tolerations, affinity, spread and ports.
func sameShape(a, b *v1.Pod) bool {
	return reflect.DeepEqual(a.Spec.Containers, b.Spec.Containers) &&
		reflect.DeepEqual(a.Spec.InitContainers, b.Spec.InitContainers) &&
		reflect.DeepEqual(a.Spec.NodeSelector, b.Spec.NodeSelector) &&
		reflect.DeepEqual(a.Spec.Affinity, b.Spec.Affinity) &&
		reflect.DeepEqual(a.Spec.Tolerations, b.Spec.Tolerations) &&
		reflect.DeepEqual(a.Spec.TopologySpreadConstraints, b.Spec.TopologySpreadConstraints) &&
		reflect.DeepEqual(a.Spec.Overhead, b.Spec.Overhead)
}

// eligible reports whether a pod on a node may be evicted for the gang:
// below its priority, not already terminating, and, for a gang member, of
// a gang wholly below it.
func (p *planner) eligible(pod *v1.Pod) bool {
	if pod.DeletionTimestamp != nil || p.released[pod.UID] || corev1helpers.PodPriority(pod) >= p.below {
		return false
	}
	if key, ok := gang.KeyOf(pod); ok {
		if prio, known := p.pl.index.Priority(key); known && prio >= p.below {
			return false
		}
	}
	return true
}

// fits runs the filters for member i on a node.
func (p *planner) fits(i int, node fwk.NodeInfo) bool {
	return p.pl.handle.RunFilterPluginsWithNominatedPods(p.ctx, p.states[i], p.members[i], node).IsSuccess()
}

// simulation is the cluster with some units evicted and members placed.
type simulation struct {
	p       *planner
	clones  map[string]fwk.NodeInfo
	placed  []string
	missing int
}

func (p *planner) newSimulation() *simulation {
	return &simulation{p: p, clones: map[string]fwk.NodeInfo{}, placed: make([]string, len(p.members)), missing: len(p.members)}
}

// node returns the simulation's copy of a node, cloning it on first write,
// with the released reservations taken off.
func (s *simulation) node(n fwk.NodeInfo) fwk.NodeInfo {
	name := n.Node().Name
	if c, ok := s.clones[name]; ok {
		return c
	}
	c := n.Snapshot()
	for _, pi := range n.GetPods() {
		if s.p.released[pi.GetPod().UID] {
			s.remove(c, pi)
		}
	}
	s.clones[name] = c
	return c
}

// view returns the node as the simulation sees it, without cloning.
func (s *simulation) view(n fwk.NodeInfo) fwk.NodeInfo {
	if c, ok := s.clones[n.Node().Name]; ok {
		return c
	}
	for _, pi := range n.GetPods() {
		if s.p.released[pi.GetPod().UID] {
			return s.node(n)
		}
	}
	return n
}

func (s *simulation) remove(node fwk.NodeInfo, pi fwk.PodInfo) {
	if err := node.RemovePod(s.p.logger, pi.GetPod()); err != nil {
		return
	}
	for i, state := range s.p.states {
		s.p.pl.handle.RunPreFilterExtensionRemovePod(s.p.ctx, state, s.p.members[i], pi, node)
	}
}

// evict takes a unit's pods off their nodes.
func (s *simulation) evict(u *victimUnit, byNode map[string]fwk.NodeInfo) {
	for _, pod := range append(append([]*v1.Pod(nil), u.pods...), u.reserved...) {
		n := byNode[pod.Spec.NodeName]
		if n == nil {
			continue
		}
		c := s.node(n)
		for _, pi := range c.GetPods() {
			if pi.GetPod().UID == pod.UID {
				s.remove(c, pi)
				break
			}
		}
	}
}

// place puts every member not placed yet on the first of nodes it fits on,
// and reports whether all are placed.
func (s *simulation) place(nodes []fwk.NodeInfo) bool {
	for i := range s.p.members {
		if s.placed[i] != "" {
			continue
		}
		for _, n := range nodes {
			if !s.p.fits(i, s.view(n)) {
				continue
			}
			c := s.node(n)
			pi, err := framework.NewPodInfo(s.p.members[i])
			if err != nil {
				continue
			}
			c.AddPodInfo(pi)
			for j, state := range s.p.states {
				if j != i {
					s.p.pl.handle.RunPreFilterExtensionAddPod(s.p.ctx, state, s.p.members[j], pi, c)
				}
			}
			s.placed[i] = n.Node().Name
			s.missing--
			break
		}
	}
	return s.missing == 0
}

// plan finds the least costly units whose eviction lets every member be
// placed, or nil when no eviction can (the preemption would be futile).
func (p *planner) plan(units []*victimUnit) *preemptionPlan {
	byNode := make(map[string]fwk.NodeInfo, len(p.nodes))
	for _, n := range p.nodes {
		byNode[n.Node().Name] = n
	}
	// Greedily: evict the least costly unit, place what now fits on the
	// nodes it freed, until every member is placed.
	sim := p.newSimulation()
	if sim.place(p.nodes) {
		return &preemptionPlan{placement: p.nominees(sim)}
	}
	// The nodes with room before any eviction: with the nodes the chosen
	// units free, the only ones a re-simulation needs to look at.
	var roomy []fwk.NodeInfo
	for _, name := range sim.placed {
		if name != "" {
			roomy = append(roomy, byNode[name])
		}
	}
	var chosen []*victimUnit
	for _, u := range units {
		sim.evict(u, byNode)
		chosen = append(chosen, u)
		if sim.place(unitNodes(u, byNode)) {
			break
		}
	}
	if sim.missing > 0 {
		return nil
	}
	// Reprieve: the most costly chosen units first, keep a unit whose
	// eviction turns out not to be needed.
	for i := len(chosen) - 1; i >= 0 && len(chosen) > 1; i-- {
		trial := make([]*victimUnit, 0, len(chosen)-1)
		trial = append(trial, chosen[:i]...)
		trial = append(trial, chosen[i+1:]...)
		if s := p.simulate(trial, byNode, roomy); s != nil {
			chosen, sim = trial, s
		}
	}
	return &preemptionPlan{units: chosen, placement: p.nominees(sim)}
}

// simulate places every member after evicting units, on the roomy nodes
// and those the units free, or returns nil.
func (p *planner) simulate(units []*victimUnit, byNode map[string]fwk.NodeInfo, roomy []fwk.NodeInfo) *simulation {
	sim := p.newSimulation()
	nodes := append([]fwk.NodeInfo(nil), roomy...)
	for _, u := range units {
		sim.evict(u, byNode)
		nodes = append(nodes, unitNodes(u, byNode)...)
	}
	if sim.place(nodes) {
		return sim
	}
	return nil
}

func (p *planner) nominees(sim *simulation) []nominee {
	out := make([]nominee, len(p.members))
	for i, pod := range p.members {
		out[i] = nominee{pod: pod, node: sim.placed[i]}
	}
	return out
}

// unitNodes are the nodes a unit's eviction frees.
func unitNodes(u *victimUnit, byNode map[string]fwk.NodeInfo) []fwk.NodeInfo {
	seen := map[string]bool{}
	var nodes []fwk.NodeInfo
	for _, pod := range append(append([]*v1.Pod(nil), u.pods...), u.reserved...) {
		if n := byNode[pod.Spec.NodeName]; n != nil && !seen[pod.Spec.NodeName] {
			seen[pod.Spec.NodeName] = true
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// units lists the choices of victims: every eligible pod on a node, alone
// or with its whole gang, cheapest first.
func (p *planner) units(pdbs []*policy.PodDisruptionBudget) []*victimUnit {
	var units []*victimUnit
	seenGang := map[gang.Key]bool{}
	for _, n := range p.nodes {
		for _, pi := range n.GetPods() {
			pod := pi.GetPod()
			if !p.eligible(pod) {
				continue
			}
			key, inGang := gang.KeyOf(pod)
			if inGang && p.pl.index.Has(key, pod.UID) {
				if seenGang[key] {
					continue
				}
				seenGang[key] = true
				if u := p.gangUnit(key, pdbs); u != nil {
					units = append(units, u)
				}
				continue
			}
			units = append(units, &victimUnit{pods: []*v1.Pod{pod}, priority: corev1helpers.PodPriority(pod), pdbViolations: violations([]*v1.Pod{pod}, pdbs)})
		}
	}
	sort.SliceStable(units, func(i, j int) bool { return lessCostly(units[i], units[j]) })
	return units
}

// gangUnit is a victim gang whole, or nil when one of its members may not be
// evicted.
func (p *planner) gangUnit(key gang.Key, pdbs []*policy.PodDisruptionBudget) *victimUnit {
	bound, reserved, attempt := p.pl.index.Members(key)
	k := key
	u := &victimUnit{gang: &k, attempt: attempt, reserved: reserved}
	u.priority, _ = p.pl.index.Priority(key)
	for _, pod := range bound {
		if pod.DeletionTimestamp != nil {
			continue
		}
		if corev1helpers.PodPriority(pod) >= p.below {
			return nil
		}
		u.pods = append(u.pods, pod)
	}
	u.pdbViolations = violations(u.pods, pdbs)
	return u
}

// violations counts the pods a PodDisruptionBudget allows no disruption of.
func violations(pods []*v1.Pod, pdbs []*policy.PodDisruptionBudget) int {
	n := 0
	for _, pod := range pods {
		for _, pdb := range pdbs {
			if pdb.Namespace != pod.Namespace || pdb.Status.DisruptionsAllowed > 0 {
				continue
			}
			selector, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || selector.Empty() || !selector.Matches(labels.Set(pod.Labels)) {
				continue
			}
			n++
			break
		}
	}
	return n
}
