// Package workloadcoscheduling is the WorkloadCoscheduling scheduler plugin:
// it places the pods of a Workload's gang podGroup all-or-nothing. The gang
// state lives in pkg/gang and the Workload lookup in pkg/workloadref; this
// package wires them to the scheduling framework.
package workloadcoscheduling

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	schedulinglisters "k8s.io/client-go/listers/scheduling/v1alpha1"
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
	// workloadsServed is whether the API server serves Workloads; when it
	// does not, the plugin neither watches nor waits for them.
	workloadsServed bool
}

var (
	_ fwk.PreEnqueuePlugin  = &WorkloadCoscheduling{}
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
	served, err := workloadAPIServed(handle)
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
		resolver:        workloadref.New(workloads),
		permitTimeout:   time.Duration(args.PermitWaitingTimeSeconds) * time.Second,
		workloadsServed: served,
	}
	if err := pl.watch(ctx); err != nil {
		return nil, err
	}
	return pl, nil
}

func argsFrom(obj runtime.Object) (*config.WorkloadCoschedulingArgs, error) {
	if obj == nil {
		return &config.WorkloadCoschedulingArgs{PermitWaitingTimeSeconds: configv1.DefaultPermitWaitingTimeSeconds}, nil
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

// workloadAPIServed asks discovery whether Workloads are served. Starting an
// informer for an API that is not served would block the scheduler's start
// on a cache that never syncs.
func workloadAPIServed(handle fwk.Handle) (bool, error) {
	resources, err := handle.ClientSet().Discovery().ServerResourcesForGroupVersion(workloadref.GroupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: discovering %s: %w", Name, workloadref.GroupVersion, err)
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
// podGroup is missing, or while its gang has fewer than minCount members.
func (pl *WorkloadCoscheduling) PreEnqueue(ctx context.Context, pod *v1.Pod) *fwk.Status {
	key, ok := gang.KeyOf(pod)
	if !ok {
		return nil
	}
	policy, status := pl.resolve(ctx, pod, key)
	if status != nil || !policy.IsGang() {
		return status
	}
	if present := pl.index.Counts(key).Present; present < int(policy.MinCount) {
		msg := fmt.Sprintf("waiting for the members of gang %s: %d/%d present", key, present, policy.MinCount)
		pl.tellWaiting(pod, key, v1.EventTypeNormal, "WaitingForGangMembers", msg)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	return nil
}

// resolve returns the pod's policy, or the status that keeps the pod waiting.
func (pl *WorkloadCoscheduling) resolve(ctx context.Context, pod *v1.Pod, key gang.Key) (workloadref.Policy, *fwk.Status) {
	policy, err := pl.resolver.Resolve(pod)
	if err == nil {
		return policy, nil
	}
	var reason *workloadref.Reason
	if errors.As(err, &reason) {
		pl.tellWaiting(pod, key, v1.EventTypeWarning, reason.Code, reason.Message)
		return policy, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reason.Message)
	}
	klog.FromContext(ctx).Error(err, "Resolving spec.workloadRef", "pod", klog.KObj(pod))
	return policy, fwk.AsStatus(err)
}

// tellWaiting records an event on the pod, once per change of reason, so a
// user reads with `kubectl describe pod` why it is pending.
func (pl *WorkloadCoscheduling) tellWaiting(pod *v1.Pod, key gang.Key, eventType, reason, msg string) {
	if pl.index.SetReason(key, pod.UID, msg) {
		pl.handle.EventRecorder().Eventf(pod, nil, eventType, reason, "Scheduling", msg)
	}
}

// Reserve counts the pod as placed in its gang.
func (pl *WorkloadCoscheduling) Reserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) *fwk.Status {
	if key, ok := gang.KeyOf(pod); ok {
		pl.index.Reserve(key, pod)
	}
	return nil
}

// Unreserve takes back the pod's reservation.
func (pl *WorkloadCoscheduling) Unreserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	if key, ok := gang.KeyOf(pod); ok {
		pl.index.Unreserve(key, pod.UID)
	}
}

// Permit holds a gang member until minCount members of its gang are reserved
// or bound, then lets all of them go to binding together.
func (pl *WorkloadCoscheduling) Permit(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, nodeName string) (*fwk.Status, time.Duration) {
	key, ok := gang.KeyOf(pod)
	if !ok {
		return nil, 0
	}
	policy, err := pl.resolver.Resolve(pod)
	if err != nil {
		// The Workload or podGroup went away after the pod entered the queue.
		return fwk.NewStatus(fwk.Unschedulable, err.Error()), 0
	}
	if !policy.IsGang() {
		return nil, 0
	}
	logger := klog.FromContext(ctx)
	counts := pl.index.Counts(key)
	if counts.Placed() < int(policy.MinCount) {
		logger.V(4).Info("Gang member waits for its gang", "pod", klog.KObj(pod), "gang", key, "placed", counts.Placed(), "minCount", policy.MinCount)
		return fwk.NewStatus(fwk.Wait, fmt.Sprintf("waiting for gang %s: %d/%d members placed", key, counts.Placed(), policy.MinCount)), pl.permitTimeout
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
