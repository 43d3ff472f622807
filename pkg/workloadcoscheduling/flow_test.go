package workloadcoscheduling

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	schedulerapi "k8s.io/kubernetes/pkg/scheduler/apis/config"
	schedulercache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedulermetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/workload-coscheduling/workload-coscheduling/apis/config"
	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// flow is the plugin inside a real scheduling framework (its waiting pods,
// Permit timers, Reserve/Unreserve order), driven one callback at a time as
// the scheduler would drive it, with the informer's deliveries made by
// hand. It runs in milliseconds: no API server, no scheduler loop.
type flow struct {
	t         testing.TB
	ctx       context.Context
	logger    klog.Logger
	fh        framework.Framework
	pl        *WorkloadCoscheduling
	informers informers.SharedInformerFactory
	recorder  *events.FakeRecorder
	activator *activations
	now       time.Time
	// binding holds, per pod waiting at Permit, the end of its binding
	// cycle: the status WaitOnPermit returned. A rejected pod's Unreserve
	// runs only when the test says so (finish), so the window between the
	// framework's rejection and Unreserve can be tested.
	mu      sync.Mutex
	binding map[types.UID]chan *fwk.Status
}

const flowProfile = "workload-coscheduling"

type activations struct {
	mu   sync.Mutex
	pods []string
}

func (a *activations) Activate(_ klog.Logger, pods map[string]*v1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name := range pods {
		a.pods = append(a.pods, name)
	}
}

func (a *activations) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	pods := a.pods
	a.pods = nil
	return pods
}

// newFlow builds the flow of the leader; nodes, when given, are the
// scheduling snapshot.
func newFlow(t testing.TB, nodes ...*v1.Node) *flow { return newFlowOf(t, true, nodes...) }

// newFlowOf builds the flow of the leader or, with leading false, of a
// standby (leader.go), whose handlers have synced.
func newFlowOf(t testing.TB, leading bool, nodes ...*v1.Node) *flow {
	// The framework instruments its plugins with the scheduler's metrics.
	schedulermetrics.Register()
	logger, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	client := fake.NewClientset()
	client.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{
		{GroupVersion: "scheduling.k8s.io/v1alpha1", APIResources: []metav1.APIResource{{Name: "workloads", Kind: "Workload"}}},
	}
	f := &flow{
		t: t, ctx: ctx, logger: logger,
		informers: informers.NewSharedInformerFactory(client, 0),
		recorder:  events.NewFakeRecorder(1000),
		activator: &activations{},
		now:       time.Now(),
		binding:   map[types.UID]chan *fwk.Status{},
	}
	ours := []schedulerapi.Plugin{{Name: Name}}
	profile := &schedulerapi.KubeSchedulerProfile{
		SchedulerName: flowProfile,
		Plugins: &schedulerapi.Plugins{
			QueueSort: schedulerapi.PluginSet{Enabled: ours}, PreEnqueue: schedulerapi.PluginSet{Enabled: ours},
			PreFilter: schedulerapi.PluginSet{Enabled: ours}, PostFilter: schedulerapi.PluginSet{Enabled: ours},
			Reserve: schedulerapi.PluginSet{Enabled: ours}, Permit: schedulerapi.PluginSet{Enabled: ours},
			Bind: schedulerapi.PluginSet{Enabled: []schedulerapi.Plugin{{Name: defaultbinder.Name}}},
		},
		// The shipped configuration's args (manifests/scheduler-config.yaml).
		PluginConfig: []schedulerapi.PluginConfig{{Name: Name, Args: &config.WorkloadCoschedulingArgs{PermitWaitingTimeSeconds: 60, PodGroupBackoffSeconds: 10}}},
	}
	registry := frameworkruntime.Registry{Name: New, defaultbinder.Name: defaultbinder.New}
	fh, err := frameworkruntime.NewFramework(ctx, registry, profile,
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithInformerFactory(f.informers),
		frameworkruntime.WithEventRecorder(f.recorder),
		frameworkruntime.WithPodActivator(f.activator),
		frameworkruntime.WithWaitingPods(frameworkruntime.NewWaitingPodsMap()),
		frameworkruntime.WithSnapshotSharedLister(schedulercache.NewSnapshot(nil, nodes)),
	)
	if err != nil {
		t.Fatalf("building the framework: %v", err)
	}
	f.fh = fh
	f.pl = pluginOf(t, fh)
	f.pl.now = func() time.Time { return f.now }
	f.pl.assemblyGrace = 0
	if leading {
		f.pl.markLeading()
	}
	f.informers.Start(ctx.Done())
	f.informers.WaitForCacheSync(ctx.Done())
	// The plugin reports nothing until its handlers have synced.
	deadline := time.Now().Add(5 * time.Second)
	for leading && !f.synced() || !leading && !f.handlersSynced() {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's handlers never synced")
		}
		time.Sleep(time.Millisecond)
	}
	return f
}

func pluginOf(t testing.TB, fh framework.Framework) *WorkloadCoscheduling {
	for _, pl := range fh.PreEnqueuePlugins() {
		if p, ok := pl.(*WorkloadCoscheduling); ok {
			return p
		}
	}
	t.Fatalf("the framework has no %s", Name)
	return nil
}

func (f *flow) handlersSynced() bool {
	for _, h := range f.pl.handlers {
		if !h.HasSynced() {
			return false
		}
	}
	return true
}

func (f *flow) synced() bool {
	f.pl.startup.mu.Lock()
	defer f.pl.startup.mu.Unlock()
	return f.pl.startup.synced
}

// workload creates a Workload with one gang podGroup "workers".
func (f *flow) workload(name string, minCount int32) {
	w := st.MakeWorkload().Namespace("ns").Name(name).PodGroup(st.MakePodGroup().Name("workers").MinCount(minCount).Obj()).Obj()
	if err := f.informers.Scheduling().V1alpha1().Workloads().Informer().GetStore().Add(w); err != nil {
		f.t.Fatal(err)
	}
	f.pl.workloadAdded(f.logger, w)
}

// portableWorkload records a portable Workload with one gang podGroup
// "workers", as its informer would deliver it.
func (f *flow) portableWorkload(name string, minCount int32) {
	w := &wcsv1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: wcsv1alpha1.WorkloadSpec{
		PodGroups: []wcsv1alpha1.PodGroup{{Name: "workers", Policy: wcsv1alpha1.PodGroupPolicy{Gang: &wcsv1alpha1.GangSchedulingPolicy{MinCount: minCount}}}}}}
	f.pl.resolver.ServePortable(nil)
	f.pl.resolver.SetPortableWorkload(w)
	f.pl.workloadArrived(f.logger, w, gang.SourcePortable)
}

// gangPod is a pod of gang workload/workers[replica] for our scheduler.
func gangPod(name, workload, replica string) *st.PodWrapper {
	return st.MakePod().Namespace("ns").Name(name).UID(name).SchedulerName(flowProfile).
		WorkloadRef(&v1.WorkloadReference{Name: workload, PodGroup: "workers", PodGroupReplicaKey: replica})
}

// add is the informer delivering a new pod.
func (f *flow) add(pods ...*v1.Pod) {
	for _, pod := range pods {
		if err := f.informers.Core().V1().Pods().Informer().GetStore().Add(pod); err != nil {
			f.t.Fatal(err)
		}
		f.pl.podObserved(f.logger, pod, false)
	}
}

// update is the informer delivering a changed pod.
func (f *flow) update(old, pod *v1.Pod) {
	if err := f.informers.Core().V1().Pods().Informer().GetStore().Update(pod); err != nil {
		f.t.Fatal(err)
	}
	f.pl.podUpdated(f.logger, old, pod)
}

// remove is the informer delivering a pod's deletion.
func (f *flow) remove(pod *v1.Pod) {
	if err := f.informers.Core().V1().Pods().Informer().GetStore().Delete(pod); err != nil {
		f.t.Fatal(err)
	}
	f.pl.podDeleted(f.logger, pod)
}

// preEnqueue runs the framework's PreEnqueue plugins for the pod.
func (f *flow) preEnqueue(pod *v1.Pod) *fwk.Status {
	for _, pl := range f.fh.PreEnqueuePlugins() {
		if s := pl.PreEnqueue(f.ctx, pod); !s.IsSuccess() {
			return s
		}
	}
	return nil
}

// cycle runs a scheduling cycle of the pod as the scheduler does: PreFilter,
// then, when node is "", no node fits and PostFilter runs; otherwise
// Reserve and Permit on node, and a pod told to wait starts its binding
// cycle, which waits at Permit. It returns the status the cycle ended with.
func (f *flow) cycle(pod *v1.Pod, node string) *fwk.Status {
	state := framework.NewCycleState()
	if _, s, _ := f.fh.RunPreFilterPlugins(f.ctx, state, pod); !s.IsSuccess() {
		return s
	}
	if node == "" {
		_, s := f.fh.RunPostFilterPlugins(f.ctx, state, pod, framework.NewDefaultNodeToStatus())
		return s
	}
	if s := f.fh.RunReservePluginsReserve(f.ctx, state, pod, node); !s.IsSuccess() {
		f.fh.RunReservePluginsUnreserve(f.ctx, state, pod, node)
		return s
	}
	s := f.fh.RunPermitPlugins(f.ctx, state, pod, node)
	if s.IsRejected() {
		f.fh.RunReservePluginsUnreserve(f.ctx, state, pod, node)
		return s
	}
	done := make(chan *fwk.Status, 1)
	f.mu.Lock()
	f.binding[pod.UID] = done
	f.mu.Unlock()
	go func() { done <- f.fh.WaitOnPermit(f.ctx, pod) }()
	return s
}

// outcome waits for the end of the pod's wait at Permit.
func (f *flow) outcome(pod *v1.Pod) *fwk.Status {
	f.mu.Lock()
	done := f.binding[pod.UID]
	f.mu.Unlock()
	if done == nil {
		f.t.Fatalf("%s is not in a binding cycle", pod.Name)
	}
	select {
	case s := <-done:
		done <- s
		return s
	case <-time.After(5 * time.Second):
		f.t.Fatalf("%s still waits at Permit", pod.Name)
		return nil
	}
}

// finish ends the pod's binding cycle: a rejected pod runs Unreserve, an
// allowed one is bound (bind fails when bindFails).
func (f *flow) finish(pod *v1.Pod, bindFails bool) *v1.Pod {
	s := f.outcome(pod)
	if !s.IsSuccess() || bindFails {
		f.fh.RunReservePluginsUnreserve(f.ctx, framework.NewCycleState(), pod, "")
		return pod
	}
	bound := pod.DeepCopy()
	bound.Spec.NodeName = "node-" + pod.Name
	f.update(pod, bound)
	return bound
}

func (f *flow) wantCode(what string, s *fwk.Status, want fwk.Code) {
	f.t.Helper()
	if s.Code() != want {
		f.t.Fatalf("%s: %v, want %v", what, s, want)
	}
}

// events returns the events recorded so far whose text contains reason.
func (f *flow) events(reason string) []string {
	var got []string
	for {
		select {
		case e := <-f.recorder.Events:
			if strings.Contains(e, " "+reason+" ") {
				got = append(got, e)
			}
		default:
			return got
		}
	}
}

func (f *flow) counts(pod *v1.Pod) gang.Counts {
	key, _ := gang.KeyOf(pod)
	return f.pl.index.Counts(key)
}

func pods(ws ...*st.PodWrapper) []*v1.Pod {
	out := make([]*v1.Pod, len(ws))
	for i, w := range ws {
		out[i] = w.Obj()
	}
	return out
}

func terminating(pod *v1.Pod) *v1.Pod {
	p := pod.DeepCopy()
	p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	return p
}
