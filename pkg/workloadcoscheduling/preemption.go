package workloadcoscheduling

import (
	"context"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	policy "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	apipod "k8s.io/kubernetes/pkg/api/v1/pod"
	"k8s.io/kubernetes/pkg/scheduler/util"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// victimsWait is how long a gang that preempted waits for its victims to
// terminate before it may preempt again.
const victimsWait = 2 * time.Minute

// Results of a preemption attempt, the values of the result label.
const (
	preemptionPreempted    = "preempted"
	preemptionFutile       = "futile"
	preemptionNoCandidates = "no_candidates"
)

// preempt tries to make room for the pod's whole gang (or for the pod alone,
// a plain pod) by evicting lower-priority pods, whole gangs at a time, and
// evicts nothing when the gang would not fit even then. It returns the
// nomination for the pod and true when it evicted, or the reason it did not.
func (pl *WorkloadCoscheduling) preempt(ctx context.Context, state fwk.CycleState, pod *v1.Pod, m membership, isGang bool) (*fwk.PostFilterResult, string, bool) {
	logger := klog.FromContext(ctx)
	p := &planner{ctx: ctx, logger: logger, pl: pl, released: map[types.UID]bool{}}
	p.below = corev1helpers.PodPriority(pod)
	never := pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == v1.PreemptNever
	var attempt uint64
	p.members, p.states = []*v1.Pod{pod}, []fwk.CycleState{state.Clone()}
	if isGang {
		p.below, never = pl.index.PreemptionRights(m.key)
		var ok bool
		if attempt, ok = pl.gangMembersToPlace(p, m, pod); !ok {
			return nil, "", false
		}
	}
	if never {
		return nil, "", false
	}
	nodes, err := pl.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return nil, "", false
	}
	p.nodes = nodes
	var pdbs []*policy.PodDisruptionBudget
	if pl.pdbs != nil {
		pdbs, _ = pl.pdbs.List(labels.Everything())
	}
	var plan *preemptionPlan
	var candidates bool
	if t := m.policy.Topology; isGang && t != nil && t.Required != "" {
		plan, candidates = p.planInDomains(pdbs, t.Required, pl.boundNodes(m.key))
	} else if units := p.units(pdbs); len(units) > 0 {
		plan, candidates = p.plan(units), true
	}
	if !candidates {
		preemptionAttempts.WithLabelValues(preemptionNoCandidates).Inc()
		return nil, "", false
	}
	if plan != nil && len(plan.units) == 0 {
		// Everything fits without an eviction: the cluster changed since
		// this cycle's snapshot. The attempt fails as usual and goes again.
		return nil, "", false
	}
	if plan == nil {
		preemptionAttempts.WithLabelValues(preemptionFutile).Inc()
		what := "the pod"
		if isGang {
			what = fmt.Sprintf("gang %s (%d members to place)", m.key, len(p.members))
		}
		return nil, fmt.Sprintf("preemption would not make room for %s: nothing evicted", what), false
	}
	preemptor := describePreemptor(pod, m, isGang)
	planned := plan.victims()
	var e gang.Effects
	if isGang {
		// The gang waits for its victims before the first is evicted: a
		// victim's deletion seen before would be lost, and the gang would
		// wait for it to the end of victimsWait.
		var ok bool
		if e, ok = pl.index.Preempted(m.key, attempt, planned, victimsWait, pl.now()); !ok {
			return nil, "", false
		}
	}
	evicted := pl.evict(ctx, plan, pod, preemptor)
	preemptionAttempts.WithLabelValues(preemptionPreempted).Inc()
	if isGang {
		pl.giveUpVictims(logger, planned, evicted)
		pl.carryOut(ctx, m.key, e, fmt.Sprintf("%s preempted %d pods to make room; waiting for them to terminate", preemptor, len(evicted)))
		pl.nominate(ctx, plan.placement[1:])
		time.AfterFunc(victimsWait, func() { pl.activate(logger, m.key, "victims' wait over") })
		pl.tellWorkload(m.key, v1.EventTypeNormal, ReasonGangPreempting,
			fmt.Sprintf("%s evicts %s to make room for its %d members on %s", preemptor, describeUnits(plan.units), len(plan.placement), describeNodes(plan.placement)))
	}
	return &fwk.PostFilterResult{NominatingInfo: &fwk.NominatingInfo{NominatedNodeName: plan.placement[0].node, NominatingMode: fwk.ModeOverride}},
		fmt.Sprintf("%s preempted %s", preemptor, describeUnits(plan.units)), true
}

// gangMembersToPlace fills the planner with the gang's members that still
// need a node, up to minCount: its pending members and the ones holding a
// reservation of this attempt (the preemption gives those up and places
// them anew). It returns the attempt, or false when the gang must not
// preempt now (it waits for its victims, or lacks members).
func (pl *WorkloadCoscheduling) gangMembersToPlace(p *planner, m membership, pod *v1.Pod) (uint64, bool) {
	if !pl.index.MayPreempt(m.key, pl.now()) {
		return 0, false
	}
	_, reserved, attempt := pl.index.Members(m.key)
	need := m.minCount() - pl.index.Counts(m.key).Bound
	var candidates []*v1.Pod
	for _, r := range reserved {
		p.released[r.UID] = true
		// Placed anew: anywhere, not only on the node it reserved.
		member := *r
		member.Spec.NodeName = ""
		candidates = append(candidates, &member)
	}
	for _, other := range pl.index.PendingPods(m.key) {
		candidates = append(candidates, other)
	}
	for _, other := range candidates {
		if len(p.members) >= need {
			break
		}
		if other.UID == pod.UID {
			continue
		}
		p.members = append(p.members, other)
		p.states = append(p.states, pl.stateFor(p, other))
	}
	if len(p.members) < need || need <= 0 {
		return 0, false
	}
	return attempt, true
}

// stateFor returns the filter state of a member: the preemptor's, cloned,
// when they have the same shape; otherwise one from the profile's PreFilter
// plugins.
func (pl *WorkloadCoscheduling) stateFor(p *planner, member *v1.Pod) fwk.CycleState {
	if sameShape(member, p.members[0]) {
		return p.states[0].Clone()
	}
	runner, ok := pl.handle.(preFilterRunner)
	if !ok {
		return p.states[0].Clone()
	}
	state := p.states[0].Clone()
	if _, status, _ := runner.RunPreFilterPlugins(p.ctx, state, member); !status.IsSuccess() {
		return p.states[0].Clone()
	}
	return state
}

// evict carries out a plan's evictions: a victim gang's attempt is failed
// (its waiting members rejected) and its bound members evicted; plain pods
// are evicted. It returns the UIDs of the evicted pods.
func (pl *WorkloadCoscheduling) evict(ctx context.Context, plan *preemptionPlan, preemptorPod *v1.Pod, preemptor string) []types.UID {
	logger := klog.FromContext(ctx)
	var victims []types.UID
	for _, u := range plan.units {
		if u.isGang() {
			victimsPreempted.WithLabelValues("gang").Inc()
			e := pl.index.Fail(*u.gang, u.attempt, gang.OutcomePreempted, pl.now())
			pl.carryOut(ctx, *u.gang, e, fmt.Sprintf("gang %s preempted by %s", u.gang, preemptor))
			pl.tellWorkload(*u.gang, v1.EventTypeWarning, ReasonGangPreempted,
				fmt.Sprintf("gang %s preempted whole (%d pods) by %s", u.gang, len(u.pods), preemptor))
		} else {
			victimsPreempted.WithLabelValues("pod").Inc()
		}
		for _, pod := range u.pods {
			if err := pl.evictPod(ctx, pod, preemptorPod, preemptor); err != nil {
				logger.Error(err, "Evicting a preemption victim failed", "victim", klog.KObj(pod), "preemptor", preemptor)
				continue
			}
			victims = append(victims, pod.UID)
		}
	}
	return victims
}

// giveUpVictims stops the gang waiting for the planned victims whose
// eviction failed: they are not going.
func (pl *WorkloadCoscheduling) giveUpVictims(logger klog.Logger, planned, evicted []types.UID) {
	if len(evicted) == len(planned) {
		return
	}
	gone := make(map[types.UID]bool, len(evicted))
	for _, uid := range evicted {
		gone[uid] = true
	}
	for _, uid := range planned {
		if gone[uid] {
			continue
		}
		if key, e := pl.index.VictimGone(uid, pl.now()); e.Activate {
			pl.activate(logger, key, "no pod it preempted is left to wait for")
		}
	}
}

// evictPod marks the victim with a DisruptionTarget condition, as the
// default preemption does, deletes it, and tells it who preempted it.
func (pl *WorkloadCoscheduling) evictPod(ctx context.Context, victim, preemptorPod *v1.Pod, preemptor string) error {
	condition := &v1.PodCondition{
		Type:    v1.DisruptionTarget,
		Status:  v1.ConditionTrue,
		Reason:  v1.PodReasonPreemptionByScheduler,
		Message: fmt.Sprintf("%s: preempting to accommodate %s", preemptorPod.Spec.SchedulerName, preemptor),
	}
	status := victim.Status.DeepCopy()
	if apipod.UpdatePodCondition(status, condition) {
		if err := util.PatchPodStatus(ctx, pl.handle.ClientSet(), victim.Name, victim.Namespace, &victim.Status, status); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
	}
	if err := util.DeletePod(ctx, pl.handle.ClientSet(), victim); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	pl.sched.EventRecorder().Eventf(victim, preemptorPod, v1.EventTypeNormal, "Preempted", "Preempting",
		"Preempted by %s on node %s", preemptor, victim.Spec.NodeName)
	return nil
}

// nominate holds the planned nodes for the gang's other members while the
// victims terminate: a nominated node is taken by no pod of lower priority.
func (pl *WorkloadCoscheduling) nominate(ctx context.Context, nominees []nominee) {
	for _, n := range nominees {
		pl.setNomination(ctx, n.pod, n.node)
	}
}

func (pl *WorkloadCoscheduling) setNomination(ctx context.Context, pod *v1.Pod, node string) {
	if pod.Status.NominatedNodeName == node {
		return
	}
	status := pod.Status.DeepCopy()
	status.NominatedNodeName = node
	if err := util.PatchPodStatus(ctx, pl.handle.ClientSet(), pod.Name, pod.Namespace, &pod.Status, status); err != nil && !apierrors.IsNotFound(err) {
		klog.FromContext(ctx).Error(err, "Setting a gang member's nominated node failed", "pod", klog.KObj(pod), "node", node)
	}
}

// clearNominations takes back the nodes held for a gang whose attempt after
// a preemption failed.
func (pl *WorkloadCoscheduling) clearNominations(ctx context.Context, key gang.Key) {
	for _, pod := range pl.index.PendingPods(key) {
		if pod.Status.NominatedNodeName != "" {
			pl.setNomination(ctx, pod, "")
		}
	}
}

func describePreemptor(pod *v1.Pod, m membership, isGang bool) string {
	if isGang {
		return fmt.Sprintf("gang %s (priority %d)", m.key, corev1helpers.PodPriority(pod))
	}
	return fmt.Sprintf("pod %s/%s (priority %d)", pod.Namespace, pod.Name, corev1helpers.PodPriority(pod))
}

func describeUnits(units []*victimUnit) string {
	var parts []string
	for _, u := range units {
		if u.isGang() {
			parts = append(parts, fmt.Sprintf("gang %s (%d pods)", u.gang, len(u.pods)))
			continue
		}
		for _, pod := range u.pods {
			parts = append(parts, "pod "+pod.Namespace+"/"+pod.Name)
		}
	}
	return strings.Join(parts, ", ")
}

func describeNodes(placement []nominee) string {
	seen := map[string]bool{}
	var nodes []string
	for _, n := range placement {
		if !seen[n.node] {
			seen[n.node] = true
			nodes = append(nodes, n.node)
		}
	}
	return strings.Join(nodes, ", ")
}
