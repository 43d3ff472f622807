// Package workloadcoscheduling is the WorkloadCoscheduling scheduler plugin:
// it places the pods of a Workload's gang podGroup all-or-nothing. The gang
// state lives in pkg/gang and the Workload lookup in pkg/workloadref; this
// package wires them to the scheduling framework.
package workloadcoscheduling

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	schedulinglisters "k8s.io/client-go/listers/scheduling/v1alpha1"
	"k8s.io/client-go/tools/cache"
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

// WorkloadCoscheduling gang-schedules pods by their spec.workloadRef.
type WorkloadCoscheduling struct {
	handle        fwk.Handle
	index         *gang.Index
	resolver      *workloadref.Resolver
	permitTimeout time.Duration
	backoff       time.Duration
	// workloadsServed is whether the API server serves Workloads; when it
	// does not, the plugin neither watches nor waits for them.
	workloadsServed bool
	// pods is the scheduler's pod informer store, indexed by gang. It is
	// synced before scheduling starts and written before any handler runs,
	// so it counts a gang's members right when the index, fed by a handler,
	// lags (a scheduler that just started on a full queue).
	pods cache.Indexer
	// handlers are the plugin's informer handlers; until they have synced,
	// the index and the resolver are still filling and a waiting reason may
	// be wrong, so none is reported: see tellWaiting.
	handlers []cache.ResourceEventHandlerRegistration
	startup  startupReports
	// now is the clock; tests of the pure logic may replace it.
	now func() time.Time
}

var (
	_ fwk.QueueSortPlugin   = &WorkloadCoscheduling{}
	_ fwk.PreEnqueuePlugin  = &WorkloadCoscheduling{}
	_ fwk.PreFilterPlugin   = &WorkloadCoscheduling{}
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
		handle:          handle,
		index:           gang.NewIndex(),
		resolver:        workloadref.New(served, workloads),
		permitTimeout:   time.Duration(args.PermitWaitingTimeSeconds) * time.Second,
		backoff:         time.Duration(args.PodGroupBackoffSeconds) * time.Second,
		workloadsServed: served,
		now:             time.Now,
	}
	podInformer := handle.SharedInformerFactory().Core().V1().Pods().Informer()
	if err := podInformer.AddIndexers(cache.Indexers{gangIndex: gangIndexFunc}); err != nil {
		return nil, fmt.Errorf("%s: indexing pods by gang: %w", Name, err)
	}
	pl.pods = podInformer.GetIndexer()
	if err := pl.watch(ctx); err != nil {
		return nil, err
	}
	pl.startup.pods = map[string]*v1.Pod{}
	go pl.reportAfterSync(ctx)
	go pl.watchPortable(ctx)
	pl.registerMetrics()
	go func() {
		<-ctx.Done()
		pl.unregisterMetrics()
	}()
	return pl, nil
}

// gangIndex names the pod informer's index of pods by gang key.
const gangIndex = "workload-coscheduling.io/gang"

func gangIndexFunc(obj interface{}) ([]string, error) {
	if pod, ok := obj.(*v1.Pod); ok {
		if key, ok := gang.KeyOf(pod); ok {
			return []string{key.String()}, nil
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

// discoveryTimeout bounds how long the plugin waits at start for the API
// server to answer discovery.
const discoveryTimeout = 2 * time.Minute

// workloadAPIServed asks discovery whether built-in Workloads are served.
// Starting an informer for an API that is not served would block the
// scheduler's start on a cache that never syncs. A scheduler may start
// before its API server answers (a control plane booting, a pod restarted
// with it): the question is asked again until discoveryTimeout, as the
// scheduler's informers retry their lists, rather than failing the start.
func workloadAPIServed(ctx context.Context, handle fwk.Handle) (served bool, err error) {
	logger := klog.FromContext(ctx)
	poll := wait.PollUntilContextTimeout(ctx, time.Second, discoveryTimeout, true, func(context.Context) (bool, error) {
		served, err = apiServed(handle, workloadref.GroupVersion)
		if err != nil {
			logger.V(2).Info("Discovery failed; asking again", "groupVersion", workloadref.GroupVersion, "err", err)
			return false, nil
		}
		return true, nil
	})
	if poll != nil && err == nil {
		err = poll
	}
	return served, err
}

// apiServed asks discovery whether groupVersion serves workloads.
func apiServed(handle fwk.Handle, groupVersion string) (bool, error) {
	resources, err := handle.ClientSet().Discovery().ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: discovering %s: %w", Name, groupVersion, err)
	}
	for _, r := range resources.APIResources {
		if r.Name == "workloads" {
			return true, nil
		}
	}
	return false, nil
}

// Name returns the plugin's name.
func (pl *WorkloadCoscheduling) Name() string { return Name }

// PreEnqueue keeps a pod out of the active queue while its Workload or
// podGroup is missing, while its gang has fewer than minCount members, or
// while its gang backs off after a failed attempt.
func (pl *WorkloadCoscheduling) PreEnqueue(ctx context.Context, pod *v1.Pod) *fwk.Status {
	key, ok := gang.KeyOf(pod)
	if !ok {
		return nil
	}
	policy, status := pl.resolve(pod, key)
	if status != nil || !policy.IsGang() {
		return status
	}
	if status := pl.gangReady(key, pod, policy); status != nil {
		pl.tellGangWaiting(pod, key, status.reason, status.Message())
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
// or nil. The pod itself counts as present even when the informer has not
// delivered it to the index yet: the queue can see a new pod first.
func (pl *WorkloadCoscheduling) gangReady(key gang.Key, pod *v1.Pod, policy workloadref.Policy) *waitStatus {
	present := pl.index.Counts(key).Present
	if !pl.index.Has(key, pod.UID) {
		present++
	}
	if present < int(policy.MinCount) && pl.pods != nil {
		// Slow path: ask the informer's store, which may be ahead.
		if members, err := pl.pods.ByIndex(gangIndex, key.String()); err == nil && len(members) > present {
			present = len(members)
		}
	}
	if present < int(policy.MinCount) {
		return &waitStatus{reason: "WaitingForGangMembers", Status: fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("waiting for the members of gang %s: %d/%d present", key, present, policy.MinCount))}
	}
	if left := pl.index.BackoffLeft(key, pl.now()); left > 0 {
		return &waitStatus{reason: "GangBackoff", Status: fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("gang %s is backing off for %v after a failed attempt", key, pl.backoff))}
	}
	return nil
}

// resolve returns the pod's policy, or the status that keeps the pod waiting.
func (pl *WorkloadCoscheduling) resolve(pod *v1.Pod, key gang.Key) (workloadref.Policy, *fwk.Status) {
	policy, reason := pl.resolver.Resolve(pod)
	if reason != nil {
		pl.tellWaiting(pod, key, v1.EventTypeWarning, reason.Code, reason.Message)
		return policy, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reason.Message)
	}
	return policy, nil
}

// tellWaiting records an event on the pod, once per change of reason, so a
// user reads with `kubectl describe pod` why it is pending. While the
// scheduler starts, the queue judges pods before the plugin's handlers have
// delivered every Workload and member, and the reason may be wrong: such a
// pod is remembered instead, and judged again once the handlers have synced.
func (pl *WorkloadCoscheduling) tellWaiting(pod *v1.Pod, key gang.Key, eventType, reason, msg string) {
	if pl.startup.hold(pod) {
		return
	}
	if pl.index.SetReason(key, pod.UID, msg) {
		pl.handle.EventRecorder().Eventf(pod, nil, eventType, reason, "Scheduling", msg)
	}
}

// tellWorkload records an event on the gang's Workload: one per attempt of
// the gang (admitted, or rolled back with the reason), however many members
// it has, so `kubectl describe workload` reads the gang's history.
func (pl *WorkloadCoscheduling) tellWorkload(key gang.Key, eventType, reason, note string) {
	if w := pl.resolver.Workload(key); w != nil {
		pl.handle.EventRecorder().Eventf(w, nil, eventType, reason, "Scheduling", note)
	}
}

// tellGangWaiting reports why a whole gang waits (too few members, or a
// backoff) once per change of that reason for the gang, not per member: on
// the member that saw it first and on the Workload. A gang of 1000 costs two
// events per change, and `kubectl gang describe` shows the live counts.
func (pl *WorkloadCoscheduling) tellGangWaiting(pod *v1.Pod, key gang.Key, reason, msg string) {
	if pl.startup.hold(pod) {
		return
	}
	if pl.index.SetGangReason(key, reason) {
		pl.handle.EventRecorder().Eventf(pod, nil, v1.EventTypeNormal, reason, "Scheduling", msg)
		pl.tellWorkload(key, v1.EventTypeNormal, reason, msg)
	}
}

// startupReports holds the pods turned away before the plugin's handlers had
// synced.
type startupReports struct {
	mu     sync.Mutex
	synced bool
	pods   map[string]*v1.Pod
}

// hold remembers the pod and reports true while the handlers have not
// synced; afterwards it reports false.
func (r *startupReports) hold(pod *v1.Pod) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.synced || r.pods == nil {
		return false
	}
	r.pods[pod.Namespace+"/"+pod.Name] = pod
	return true
}

// reportAfterSync waits for the plugin's handlers to sync, then has the
// queue judge again, with a full index, the pods turned away meanwhile.
func (pl *WorkloadCoscheduling) reportAfterSync(ctx context.Context) {
	synced := make([]cache.InformerSynced, len(pl.handlers))
	for i, h := range pl.handlers {
		synced[i] = h.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	pl.startup.mu.Lock()
	pl.startup.synced = true
	pods := pl.startup.pods
	pl.startup.pods = nil
	pl.startup.mu.Unlock()
	if len(pods) > 0 {
		logger := klog.FromContext(ctx)
		logger.V(3).Info("Judging again the pods turned away while the plugin's informers synced", "pods", len(pods))
		pl.handle.Activate(logger, pods)
	}
}

// PreFilter turns a gang member away before any node is looked at when its
// gang cannot be tried now: a sibling's failure started a backoff while this
// member was already in the queue, or members were deleted since it entered.
func (pl *WorkloadCoscheduling) PreFilter(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	key, ok := gang.KeyOf(pod)
	if !ok {
		return nil, nil
	}
	policy, reason := pl.resolver.Resolve(pod)
	if reason != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reason.Message)
	}
	if !policy.IsGang() {
		return nil, nil
	}
	if status := pl.gangReady(key, pod, policy); status != nil {
		return nil, status.Status
	}
	return nil, nil
}

// PreFilterExtensions returns nil: the plugin has no AddPod/RemovePod logic.
func (pl *WorkloadCoscheduling) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// PostFilter runs when a gang member fits no node. The gang cannot complete
// in this attempt, so its members that wait at Permit are rejected at once,
// releasing their nodes, and the gang backs off.
func (pl *WorkloadCoscheduling) PostFilter(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	key, ok := gang.KeyOf(pod)
	if !ok {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	policy, reason := pl.resolver.Resolve(pod)
	if reason != nil || !policy.IsGang() {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if status := pl.gangReady(key, pod, policy); status != nil {
		// Turned away by PreFilter, which said why: this is not a new failure.
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if counts := pl.index.Counts(key); counts.Bound >= int(policy.MinCount) {
		// The gang is admitted; a member beyond minCount that does not fit
		// waits like any pod, without touching its siblings.
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	msg := pl.rollback(ctx, key, resultRejectedInPostFilter, fmt.Sprintf("gang %s rejected: member %s does not fit on any node", key, pod.Name))
	return nil, fwk.NewStatus(fwk.Unschedulable, msg)
}

// rollback ends a failed attempt of a gang: the members waiting at Permit are
// rejected (only this gang's, found through the index), the gang queues
// behind the gangs that came since, and it backs off, after which one
// activation wakes its members together. A gang some of whose members are
// already bound (a bind failed after the gang was admitted) does not back
// off: bindings cannot be undone, so the rest must follow as soon as they
// can. It returns the message the members were rejected with: why, and for
// how long the gang backs off. result is the attempt's result for the
// metrics.
func (pl *WorkloadCoscheduling) rollback(ctx context.Context, key gang.Key, result, why string) string {
	logger := klog.FromContext(ctx)
	backoff := pl.backoff
	if pl.index.Counts(key).Bound > 0 {
		backoff = 0
	}
	msg := why
	if backoff > 0 {
		msg = fmt.Sprintf("%s; backing off for %v", why, backoff)
	}
	rejected := pl.rejectWaiting(key, msg)
	waited := pl.index.Fail(key, pl.now(), backoff)
	gangAttempts.WithLabelValues(result).Inc()
	membersRolledBack.Add(float64(rejected))
	if waited > 0 {
		permitWaitDuration.WithLabelValues("rolled_back").Observe(waited.Seconds())
	}
	pl.tellWorkload(key, v1.EventTypeWarning, "GangRolledBack", msg)
	logger.V(2).Info("Gang attempt failed, rolled back", "gang", key, "rejectedWaiting", rejected, "backoff", backoff, "reason", msg)
	if backoff > 0 {
		time.AfterFunc(backoff, func() { pl.activate(logger, key, "backoff over") })
	}
	return msg
}

// rejectWaiting rejects the gang's members that wait at Permit, marking them
// in the index so that their Unreserve does not roll the gang back again. It
// returns how many it rejected.
func (pl *WorkloadCoscheduling) rejectWaiting(key gang.Key, msg string) int {
	rejected := 0
	for _, uid := range pl.index.StartRollback(key) {
		if wp := pl.handle.GetWaitingPod(uid); wp != nil {
			wp.Reject(Name, msg)
			rejected++
		}
	}
	return rejected
}

// Reserve counts the pod as placed in its gang, on nodeName.
func (pl *WorkloadCoscheduling) Reserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, nodeName string) *fwk.Status {
	if key, ok := gang.KeyOf(pod); ok {
		pl.index.Reserve(key, pod, nodeName)
	}
	return nil
}

// Unreserve takes back the pod's reservation. When a member fails after it
// reserved (Permit timeout, rejection, bind error), the gang cannot complete
// in this attempt: it is rolled back like in PostFilter, once per attempt.
func (pl *WorkloadCoscheduling) Unreserve(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	key, ok := gang.KeyOf(pod)
	if !ok {
		return
	}
	wasReserved, byRollback := pl.index.Unreserve(key, pod.UID)
	if !wasReserved || byRollback {
		return
	}
	policy, reason := pl.resolver.Resolve(pod)
	if reason == nil && (!policy.IsGang() || pl.index.Counts(key).Bound >= int(policy.MinCount)) {
		return
	}
	// Once the gang was admitted its members are binding: a failure now is
	// a bind failure. Before, it is mostly a Permit wait that timed out.
	result := resultPermitTimeout
	if pl.index.Admitted(key) {
		result = resultBindFailure
	}
	pl.rollback(ctx, key, result, fmt.Sprintf("gang %s rejected: member %s failed after it was reserved", key, pod.Name))
}

// waitForGang is the status of a member that waits at Permit. The framework
// neither keeps nor changes a Wait status, so one serves every member and
// Permit allocates nothing while a gang assembles.
var waitForGang = fwk.NewStatus(fwk.Wait, "waiting for the rest of the gang")

// Permit holds a gang member until minCount members of its gang are reserved
// or bound, then lets all of them go to binding together.
func (pl *WorkloadCoscheduling) Permit(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, nodeName string) (*fwk.Status, time.Duration) {
	key, ok := gang.KeyOf(pod)
	if !ok {
		return nil, 0
	}
	policy, reason := pl.resolver.Resolve(pod)
	if reason != nil {
		// The Workload or podGroup went away after the pod entered the queue.
		return fwk.NewStatus(fwk.Unschedulable, reason.Message), 0
	}
	if !policy.IsGang() {
		return nil, 0
	}
	logger := klog.FromContext(ctx)
	counts := pl.index.Counts(key)
	if counts.Placed() < int(policy.MinCount) {
		timeout := pl.permitTimeout
		if policy.PermitTimeout > 0 {
			timeout = policy.PermitTimeout
		}
		if loggerV := logger.V(4); loggerV.Enabled() {
			loggerV.Info("Gang member waits for its gang", "pod", klog.KObj(pod), "gang", key, "placed", counts.Placed(), "minCount", policy.MinCount, "timeout", timeout)
		}
		return waitForGang, timeout
	}
	if waited, first := pl.index.Admit(key, pl.now()); first {
		gangAttempts.WithLabelValues(resultAdmitted).Inc()
		permitWaitDuration.WithLabelValues(resultAdmitted).Observe(waited.Seconds())
		pl.tellWorkload(key, v1.EventTypeNormal, "GangAdmitted", fmt.Sprintf("gang %s has %d of %d members placed: all go to binding", key, counts.Placed(), policy.MinCount))
	}
	allowed := pl.allowWaiting(key)
	logger.V(3).Info("Gang complete, members go to binding", "pod", klog.KObj(pod), "node", nodeName, "gang", key, "allowedWaiting", allowed)
	return nil, 0
}

// allowWaiting lets every member of the gang that waits at Permit go on, and
// returns how many did.
func (pl *WorkloadCoscheduling) allowWaiting(key gang.Key) int {
	allowed := 0
	for _, uid := range pl.index.ReservedPods(key) {
		if wp := pl.handle.GetWaitingPod(uid); wp != nil {
			wp.Allow(Name)
			allowed++
		}
	}
	return allowed
}
