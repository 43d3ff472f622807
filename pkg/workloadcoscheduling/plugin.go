// Package workloadcoscheduling is the WorkloadCoscheduling scheduler plugin:
// it places the pods of a Workload's gang podGroup all-or-nothing. The gang
// state and its rules live in pkg/gang and the Workload lookup in
// pkg/workloadref; this package wires them to the scheduling framework and
// carries out what the gang state machine decides (effects.go).
package workloadcoscheduling

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	policylisters "k8s.io/client-go/listers/policy/v1"
	schedulinglisters "k8s.io/client-go/listers/scheduling/v1alpha1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/workload-coscheduling/workload-coscheduling/apis/config"
	configv1 "github.com/workload-coscheduling/workload-coscheduling/apis/config/v1"
	"github.com/workload-coscheduling/workload-coscheduling/apis/config/validation"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// Name is the plugin's name in the registry and in configurations.
const Name = "WorkloadCoscheduling"

// scheduler is what the plugin asks of the running scheduler: the pods
// waiting at Permit, activation of queued pods, and events. fwk.Handle is
// one; the flow tests build a real one with frameworkruntime.NewFramework.
type scheduler interface {
	GetWaitingPod(uid types.UID) fwk.WaitingPod
	Activate(logger klog.Logger, pods map[string]*v1.Pod)
	EventRecorder() events.EventRecorder
}

// WorkloadCoscheduling gang-schedules pods by their spec.workloadRef or
// their portable Workload annotations.
type WorkloadCoscheduling struct {
	handle        fwk.Handle
	sched         scheduler
	index         *gang.Index
	resolver      *workloadref.Resolver
	permitTimeout time.Duration
	// workloadsServed is whether the API server serves Workloads; when it
	// does not, the plugin neither watches nor waits for them.
	workloadsServed bool
	// pods is the scheduler's pod informer store, indexed by gang. It is
	// written before any handler runs, so it counts a gang's members right
	// when the index, fed by a handler, lags behind the queue.
	pods cache.Indexer
	// handlers are the plugin's informer handlers; until they have synced,
	// the index and the resolver are still filling and a waiting reason may
	// be wrong, so none is reported; nor while the replica does not lead:
	// see tellWaiting.
	handlers []cache.ResourceEventHandlerRegistration
	startup  startupReports
	// pdbs lists PodDisruptionBudgets, which preemption respects.
	pdbs policylisters.PodDisruptionBudgetLister
	// lastDeleted caches reallyDeleted's answer for one event.
	lastDeleted atomic.Pointer[deletion]
	// witness is the freshest view of the members the state machine asks
	// before it admits an attempt (see gang.Witness).
	witness *witness
	// assemblyGrace delays the report of a gang waiting for its members
	// (tellGangWaiting); the flow tests set 0 to read it at once.
	assemblyGrace time.Duration
	// now is the clock; tests of the pure logic may replace it.
	now func() time.Time
	// status writes PodGroups' status once this replica leads: leading
	// closes when it does (leader.go).
	status   *podGroupStatus
	leading  chan struct{}
	leadOnce sync.Once
	// ignoredTold holds the UIDs of the pods told that one of their
	// references is ignored (tellIgnoredReference).
	ignoredTold sync.Map
}

var (
	_ fwk.QueueSortPlugin   = &WorkloadCoscheduling{}
	_ fwk.PreEnqueuePlugin  = &WorkloadCoscheduling{}
	_ fwk.PreFilterPlugin   = &WorkloadCoscheduling{}
	_ fwk.SignPlugin        = &WorkloadCoscheduling{}
	_ fwk.PostFilterPlugin  = &WorkloadCoscheduling{}
	_ fwk.ReservePlugin     = &WorkloadCoscheduling{}
	_ fwk.PermitPlugin      = &WorkloadCoscheduling{}
	_ fwk.EnqueueExtensions = &WorkloadCoscheduling{}
)

// New builds the plugin from its args (a *config.WorkloadCoschedulingArgs, or
// nil for the defaults). Invalid args are an error that names the field.
func New(ctx context.Context, obj runtime.Object, handle fwk.Handle) (fwk.Plugin, error) {
	args, err := argsFrom(obj)
	if err != nil {
		return nil, err
	}
	served, err := workloadAPIServed(ctx, handle)
	if err != nil {
		return nil, err
	}
	var workloads schedulinglisters.WorkloadLister
	if served {
		workloads = handle.SharedInformerFactory().Scheduling().V1alpha1().Workloads().Lister()
	} else {
		klog.FromContext(ctx).Info("The API server does not serve Workloads; pods with spec.workloadRef will stay pending",
			"groupVersion", workloadref.GroupVersion)
	}
	pl := &WorkloadCoscheduling{
		handle: handle,
		sched:  handle,
		index: gang.NewIndex(gang.Config{
			SchedulerName: handle.ProfileName(),
			Backoff:       time.Duration(args.PodGroupBackoffSeconds) * time.Second,
		}),
		resolver:        workloadref.New(served, workloads),
		permitTimeout:   time.Duration(args.PermitWaitingTimeSeconds) * time.Second,
		workloadsServed: served,
		assemblyGrace:   assemblyGrace,
		now:             time.Now,
		status:          newPodGroupStatus(),
		leading:         make(chan struct{}),
	}
	pl.witness = &witness{pl: pl}
	pl.pdbs = handle.SharedInformerFactory().Policy().V1().PodDisruptionBudgets().Lister()
	podInformer := handle.SharedInformerFactory().Core().V1().Pods().Informer()
	// Every profile that enables the plugin shares the scheduler's pod
	// informer: the index of pods by gang is added once.
	if _, exists := podInformer.GetIndexer().GetIndexers()[gangIndex]; !exists {
		if err := podInformer.AddIndexers(cache.Indexers{gangIndex: gangIndexFunc}); err != nil {
			return nil, fmt.Errorf("%s: indexing pods by gang: %w", Name, err)
		}
	}
	pl.pods = podInformer.GetIndexer()
	if err := pl.watch(ctx); err != nil {
		return nil, err
	}
	pl.startup.pods = map[string]*v1.Pod{}
	go pl.watchElection(ctx)
	go pl.reportAfterSync(ctx)
	go pl.watchWhenServed(ctx, workloadref.PortableGroupVersion, "workloads", pl.startPortable)
	go pl.watchWhenServed(ctx, workloadref.PodGroupGroupVersion, "podgroups", pl.startPodGroups)
	pl.registerMetrics()
	go func() {
		<-ctx.Done()
		pl.unregisterMetrics()
	}()
	return pl, nil
}

// gangIndex names the pod informer's index of pods by gang key.
const gangIndex = "workload-coscheduling.io/gang"

// gangIndexFunc indexes the live members of a gang by gang and
// schedulerName (gang.StoreKey), as the quorum counts them.
func gangIndexFunc(obj interface{}) ([]string, error) {
	if pod, ok := obj.(*v1.Pod); ok {
		if key, ok := gang.KeyOf(pod); ok && !gang.Gone(pod) {
			return []string{gang.StoreKey(key, pod.Spec.SchedulerName)}, nil
		}
	}
	return nil, nil
}

func argsFrom(obj runtime.Object) (*config.WorkloadCoschedulingArgs, error) {
	if obj == nil {
		return &config.WorkloadCoschedulingArgs{
			PermitWaitingTimeSeconds: configv1.DefaultPermitWaitingTimeSeconds,
			PodGroupBackoffSeconds:   configv1.DefaultPodGroupBackoffSeconds,
		}, nil
	}
	args, ok := obj.(*config.WorkloadCoschedulingArgs)
	if !ok {
		return nil, fmt.Errorf("%s: want args of type WorkloadCoschedulingArgs, got %T", Name, obj)
	}
	if errs := validation.ValidateWorkloadCoschedulingArgs(nil, args); len(errs) > 0 {
		return nil, fmt.Errorf("%s args: %w", Name, errs.ToAggregate())
	}
	return args, nil
}

// Name returns the plugin's name.
func (pl *WorkloadCoscheduling) Name() string { return Name }

// witness answers the state machine from the framework's waiting pods and
// the pod informer's store, which is written before any handler runs and so
// is ahead of the index.
type witness struct{ pl *WorkloadCoscheduling }

var _ gang.Witness = &witness{}

func (w *witness) Waiting(uid types.UID) bool { return w.pl.sched.GetWaitingPod(uid) != nil }

func (w *witness) Live(pod *v1.Pod) bool {
	if w.pl.pods == nil {
		return true
	}
	obj, exists, err := w.pl.pods.GetByKey(pod.Namespace + "/" + pod.Name)
	if err != nil || !exists {
		return err != nil // an error tells nothing: keep the member
	}
	current, ok := obj.(*v1.Pod)
	return ok && current.UID == pod.UID && !gang.Gone(current)
}

// membership is a pod's place in a gang, resolved once per callback.
type membership struct {
	key    gang.Key
	policy workloadref.Policy
	// reason says why the reference cannot be resolved yet, or nil.
	reason *workloadref.Reason
}

// isGang reports whether the pod is placed all-or-nothing with its gang.
func (m membership) isGang() bool { return m.reason == nil && m.policy.IsGang() }

func (m membership) minCount() int {
	if !m.isGang() {
		return 0
	}
	return int(m.policy.MinCount)
}

// membershipOf resolves the pod's reference; ok is false for a pod that
// references no Workload.
func (pl *WorkloadCoscheduling) membershipOf(pod *v1.Pod) (m membership, ok bool) {
	if m.key, ok = gang.KeyOf(pod); !ok {
		return m, false
	}
	m.policy, m.reason = pl.resolver.ResolveKey(m.key)
	return m, true
}

// PreEnqueue keeps a pod out of the active queue while its Workload or
// podGroup is missing, while its gang has fewer than minCount live members,
// or while its gang backs off after a failed attempt.
func (pl *WorkloadCoscheduling) PreEnqueue(ctx context.Context, pod *v1.Pod) *fwk.Status {
	m, ok := pl.membershipOf(pod)
	if !ok {
		return nil
	}
	pl.tellIgnoredReference(pod, m.key)
	if m.reason != nil {
		pl.tellWaiting(pod, m.key, v1.EventTypeWarning, m.reason.Code, m.reason.Message)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, m.reason.Message)
	}
	if !m.isGang() {
		return nil
	}
	if status := pl.gangReady(m, pod); status != nil {
		pl.tellGangWaiting(pod, m.key, status.reason, status.Message())
		return status.Status
	}
	return nil
}

// waitStatus is a status that keeps a gang member waiting, with the reason
// of the event that tells the user.
type waitStatus struct {
	*fwk.Status
	reason string
}

// gangReady says why the gang of pod cannot be tried now (quorum or backoff),
// or nil.
func (pl *WorkloadCoscheduling) gangReady(m membership, pod *v1.Pod) *waitStatus {
	r := pl.index.Ready(m.key, pod, pl.now())
	if r.Present < m.minCount() && pl.pods != nil {
		// The plugin's handler may lag behind the informer's store (a
		// scheduler that starts on a full queue sees every pod before its
		// handler does): ask the store before keeping the pod out. It costs
		// a copy of the gang's members, once per pod added below quorum.
		storeKey := r.StoreKey
		if storeKey == "" {
			storeKey = gang.StoreKey(m.key, pl.handle.ProfileName())
		}
		if members, err := pl.pods.ByIndex(gangIndex, storeKey); err == nil && len(members) > r.Present {
			r.Present = len(members)
		}
	}
	if r.Present < m.minCount() {
		return &waitStatus{reason: ReasonWaitingForGangMembers, Status: fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("waiting for the members of gang %s: %d/%d present", m.key, r.Present, m.policy.MinCount))}
	}
	if r.Victims > 0 {
		return &waitStatus{reason: ReasonWaitingForVictims, Status: fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("gang %s waits for %d pods it preempted to terminate", m.key, r.Victims))}
	}
	if r.BackoffLeft > 0 {
		return &waitStatus{reason: ReasonGangBackoff, Status: fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("gang %s is backing off for %v after a failed attempt", m.key, r.BackoffLeft.Round(time.Second)))}
	}
	return nil
}

// PreFilter turns a gang member away before any node is looked at when its
// gang cannot be tried now: a sibling's failure started a backoff while this
// member was already in the queue, or members were deleted since it entered.
func (pl *WorkloadCoscheduling) PreFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	pl.markLeading()
	m, ok := pl.membershipOf(pod)
	if !ok || simulating(state) {
		return nil, nil
	}
	if m.reason != nil {
		// The Workload or podGroup went away while the pod was queued: the pod
		// now waits for an event that brings it back (a Workload added), so
		// it is told why here, once per reason, as PreEnqueue would.
		pl.tellWaiting(pod, m.key, v1.EventTypeWarning, m.reason.Code, m.reason.Message)
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, m.reason.Message)
	}
	if !m.isGang() {
		return nil, nil
	}
	if status := pl.gangReady(m, pod); status != nil {
		return nil, status.Status
	}
	if status := pl.checkMinResources(ctx, pod, m); status != nil {
		return nil, status
	}
	if !m.policy.Topology.IsZero() {
		return pl.placeGang(ctx, pod, m)
	}
	return nil, nil
}

// PreFilterExtensions returns nil: the plugin has no AddPod/RemovePod logic.
func (pl *WorkloadCoscheduling) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// SignPod signs every pod the same: the plugin's PreFilter admits or turns
// away a pod before any node is looked at, and never filters or scores a
// node, so it adds nothing that could make two pods' feasible nodes differ.
// Without a signer the framework turns opportunistic batching off for the
// whole profile. The exception is a member of a gang placed by topology:
// its nodes are its attempt's domain, so it is not batched with others.
func (pl *WorkloadCoscheduling) SignPod(_ context.Context, pod *v1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	if m, ok := pl.membershipOf(pod); ok && m.isGang() && !m.policy.Topology.IsZero() {
		return nil, fwk.NewStatus(fwk.Unschedulable, "a gang placed by topology has its own nodes")
	}
	return nil, nil
}

// PostFilter runs when a pod fits no node. A gang member first tries to
// make room for its whole gang by preemption (preemption.go); when that
// evicts nothing, the gang cannot complete in this attempt: the attempt
// fails, its members waiting at Permit are rejected at once, releasing
// their nodes, and the gang backs off. A member beyond minCount of an
// admitted or running gang waits like any pod. A plain pod preempts as the
// default preemption would, except that a victim in a gang takes its whole
// gang with it.
func (pl *WorkloadCoscheduling) PostFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	m, ok := pl.membershipOf(pod)
	if !ok || (m.reason == nil && !m.isGang()) {
		if result, msg, done := pl.preempt(ctx, state, pod, m, false); done {
			return result, fwk.NewStatus(fwk.Success, msg)
		}
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if m.reason != nil {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if status := pl.gangReady(m, pod); status != nil {
		// Turned away by PreFilter, which said why: this is not a new failure.
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	var result *fwk.PostFilterResult
	var msg string
	if p, _, _ := pl.index.Placement(m.key); !p.Preferred() {
		// Not from a preferred domain: the next attempt tries the next
		// level without evicting anything.
		var done bool
		if result, msg, done = pl.preempt(ctx, state, pod, m, true); done {
			return result, fwk.NewStatus(fwk.Success, msg)
		}
	}
	why := fmt.Sprintf("gang %s rejected: member %s does not fit on any node", m.key, pod.Name)
	if msg != "" {
		why += "; " + msg
	}
	e := pl.index.Fail(m.key, pl.index.Attempt(m.key), gang.OutcomeUnfit, pl.now())
	if !e.RolledBack {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	return clearNomination(pod), fwk.NewStatus(fwk.Unschedulable, pl.carryOut(ctx, m.key, e, why))
}

// clearNomination is the result that takes back the pod's nominated node,
// held for a preemption whose attempt failed, or nil.
func clearNomination(pod *v1.Pod) *fwk.PostFilterResult {
	if pod.Status.NominatedNodeName == "" {
		return nil
	}
	return &fwk.PostFilterResult{NominatingInfo: &fwk.NominatingInfo{NominatingMode: fwk.ModeOverride}}
}

// Reserve counts the pod as placed in its gang's current attempt, on
// nodeName. The first reservation of an attempt arms its deadline. A member
// of a gang that backs off, or one deleted meanwhile, is refused.
func (pl *WorkloadCoscheduling) Reserve(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, nodeName string) *fwk.Status {
	m, ok := pl.membershipOf(pod)
	if !ok || !m.isGang() {
		return nil
	}
	e, ok := pl.index.Reserve(m.key, pod, nodeName, m.minCount(), pl.now())
	if !ok {
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("gang %s is backing off after a failed attempt, or the pod was deleted", m.key))
	}
	if e.StartedAttempt {
		pl.armDeadline(klog.FromContext(ctx), m.key, e.Attempt, pl.attemptTimeout(m.policy))
	}
	// The queue can bring a member here before the plugin's handler saw it:
	// then this reservation is what completes the quorum, and the members
	// gated before must be woken now (e.Activate).
	pl.carryOut(ctx, m.key, e, "")
	return nil
}

// Unreserve takes back the pod's reservation. A member whose live
// reservation is released (its Permit wait was rejected by the framework, a
// later plugin failed, or its binding failed) fails its gang's attempt.
func (pl *WorkloadCoscheduling) Unreserve(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	m, ok := pl.membershipOf(pod)
	if !ok {
		return
	}
	e := pl.index.Unreserve(m.key, pod.UID, m.minCount(), gang.OutcomeMemberRejected, pl.now())
	if e.RolledBack {
		pl.carryOut(ctx, m.key, e, fmt.Sprintf("gang %s rejected: member %s failed after it was reserved", m.key, pod.Name))
	}
}

// waitForGang is the status of a member that waits at Permit. The framework
// neither keeps nor changes a Wait status, so one serves every member and
// Permit allocates nothing while a gang assembles.
var waitForGang = fwk.NewStatus(fwk.Wait, "waiting for the rest of the gang")

// Permit holds a gang member until minCount members of its gang's attempt
// are reserved or bound, then lets all of them go to binding together.
func (pl *WorkloadCoscheduling) Permit(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, nodeName string) (*fwk.Status, time.Duration) {
	m, ok := pl.membershipOf(pod)
	if !ok {
		return nil, 0
	}
	if m.reason != nil {
		// The Workload or podGroup went away after the pod entered the queue.
		return fwk.NewStatus(fwk.Unschedulable, m.reason.Message), 0
	}
	if !m.isGang() {
		return nil, 0
	}
	e, verdict := pl.index.Permit(m.key, pod.UID, m.minCount(), pl.witness, pl.now())
	switch verdict {
	case gang.VerdictWait:
		if loggerV := klog.FromContext(ctx).V(4); loggerV.Enabled() {
			loggerV.Info("Gang member waits for its gang", "pod", klog.KObj(pod), "gang", m.key, "placed", e.Counts.Placed(), "minCount", m.policy.MinCount)
		}
		return waitForGang, pl.permitBackstop(m.policy)
	case gang.VerdictReject:
		msg := fmt.Sprintf("gang %s: the attempt this member reserved for has ended", m.key)
		if e.RolledBack {
			msg = pl.carryOut(ctx, m.key, e, fmt.Sprintf("gang %s rejected: a member waiting at Permit was rejected", m.key))
		}
		return fwk.NewStatus(fwk.Unschedulable, msg), 0
	}
	if e.Admitted {
		pl.carryOut(ctx, m.key, e, "")
		klog.FromContext(ctx).V(3).Info("Gang complete, members go to binding", "pod", klog.KObj(pod), "node", nodeName, "gang", m.key, "allowedWaiting", len(e.Allow))
	}
	return nil, 0
}
