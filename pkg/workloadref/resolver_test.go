package workloadref

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	schedulinglisters "k8s.io/client-go/listers/scheduling/v1alpha1"
	"k8s.io/client-go/tools/cache"

	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

func TestResolve(t *testing.T) {
	workload := &schedulingv1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job"},
		Spec: schedulingv1alpha1.WorkloadSpec{PodGroups: []schedulingv1alpha1.PodGroup{
			{Name: "driver", Policy: schedulingv1alpha1.PodGroupPolicy{Basic: &schedulingv1alpha1.BasicSchedulingPolicy{}}},
			{Name: "workers", Policy: schedulingv1alpha1.PodGroupPolicy{Gang: &schedulingv1alpha1.GangSchedulingPolicy{MinCount: 4}}},
		}},
	}
	served := New(true, nil)
	served.SetWorkload(workload)
	deleted := New(true, nil)
	deleted.SetWorkload(workload)
	deleted.DeleteWorkload(workload)

	tests := []struct {
		name         string
		resolver     *Resolver
		namespace    string
		ref          v1.WorkloadReference
		wantMinCount int32
		wantCode     string
		wantInMsg    []string
	}{
		{name: "gang", resolver: served, namespace: "ns", ref: v1.WorkloadReference{Name: "job", PodGroup: "workers"}, wantMinCount: 4},
		{name: "basic", resolver: served, namespace: "ns", ref: v1.WorkloadReference{Name: "job", PodGroup: "driver"}},
		{name: "missing Workload", resolver: served, namespace: "ns", ref: v1.WorkloadReference{Name: "nope", PodGroup: "workers"},
			wantCode: "WorkloadNotFound", wantInMsg: []string{`"nope"`, `"ns"`}},
		{name: "Workload of another namespace", resolver: served, namespace: "other", ref: v1.WorkloadReference{Name: "job", PodGroup: "workers"},
			wantCode: "WorkloadNotFound", wantInMsg: []string{`"job"`, `"other"`}},
		{name: "missing podGroup", resolver: served, namespace: "ns", ref: v1.WorkloadReference{Name: "job", PodGroup: "ps"},
			wantCode: "PodGroupNotFound", wantInMsg: []string{`"ps"`, "driver, workers"}},
		{name: "only in the informer's store", resolver: New(true, storeLister(t, workload)), namespace: "ns", ref: v1.WorkloadReference{Name: "job", PodGroup: "workers"}, wantMinCount: 4},
		{name: "deleted Workload", resolver: deleted, namespace: "ns", ref: v1.WorkloadReference{Name: "job", PodGroup: "workers"},
			wantCode: "WorkloadNotFound", wantInMsg: []string{`"job"`}},
		{name: "API not served", resolver: New(false, nil), namespace: "ns", ref: v1.WorkloadReference{Name: "job", PodGroup: "workers"},
			wantCode: "WorkloadAPINotServed", wantInMsg: []string{GroupVersion, `"job"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.ref
			pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: tc.namespace, Name: "p"}, Spec: v1.PodSpec{WorkloadRef: &ref}}
			policy, reason := tc.resolver.Resolve(pod)
			if tc.wantCode == "" {
				if reason != nil {
					t.Fatalf("unexpected reason to wait: %v", reason)
				}
				if policy.MinCount != tc.wantMinCount || policy.IsGang() != (tc.wantMinCount > 0) {
					t.Fatalf("policy = %+v, want minCount %d", policy, tc.wantMinCount)
				}
				return
			}
			wantReason(t, reason, tc.wantCode, tc.wantInMsg...)
		})
	}
}

func TestPermitTimeoutOf(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        time.Duration
		wantProblem bool
	}{
		{name: "no annotation", want: 0},
		{name: "valid", annotations: map[string]string{PermitWaitingTimeAnnotation: "120"}, want: 2 * time.Minute},
		{name: "the cap itself", annotations: map[string]string{PermitWaitingTimeAnnotation: "900"}, want: 15 * time.Minute},
		{name: "above the cap is clamped and said", annotations: map[string]string{PermitWaitingTimeAnnotation: "3600"}, want: 15 * time.Minute, wantProblem: true},
		{name: "far above the cap does not overflow", annotations: map[string]string{PermitWaitingTimeAnnotation: "9223372036854775807"}, want: 15 * time.Minute, wantProblem: true},
		{name: "zero is ignored and said", annotations: map[string]string{PermitWaitingTimeAnnotation: "0"}, want: 0, wantProblem: true},
		{name: "not a number is ignored and said", annotations: map[string]string{PermitWaitingTimeAnnotation: "1m"}, want: 0, wantProblem: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &schedulingv1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Annotations: tc.annotations}}
			got, problem := PermitTimeoutOf(w)
			if got != tc.want || (problem != "") != tc.wantProblem {
				t.Fatalf("PermitTimeoutOf = %v, %q; want %v, problem %v", got, problem, tc.want, tc.wantProblem)
			}
		})
	}
}

// storeLister is a lister over an informer store holding the Workloads.
func storeLister(t *testing.T, workloads ...*schedulingv1alpha1.Workload) schedulinglisters.WorkloadLister {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, w := range workloads {
		if err := indexer.Add(w); err != nil {
			t.Fatal(err)
		}
	}
	return schedulinglisters.NewWorkloadLister(indexer)
}

func TestResolvePortable(t *testing.T) {
	portable := &wcsv1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job", Annotations: map[string]string{PermitWaitingTimeAnnotation: "30"}},
		Spec: wcsv1alpha1.WorkloadSpec{PodGroups: []wcsv1alpha1.PodGroup{
			{Name: "driver", Policy: wcsv1alpha1.PodGroupPolicy{Basic: &wcsv1alpha1.BasicSchedulingPolicy{}}},
			{Name: "workers", Policy: wcsv1alpha1.PodGroupPolicy{Gang: &wcsv1alpha1.GangSchedulingPolicy{MinCount: 3}}},
		}},
	}
	native := &schedulingv1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job"},
		Spec: schedulingv1alpha1.WorkloadSpec{PodGroups: []schedulingv1alpha1.PodGroup{
			{Name: "workers", Policy: schedulingv1alpha1.PodGroupPolicy{Gang: &schedulingv1alpha1.GangSchedulingPolicy{MinCount: 5}}},
		}},
	}
	served := New(true, nil)
	served.ServePortable(nil)
	served.SetPortableWorkload(portable)
	served.SetWorkload(native)
	notServed := New(true, nil)
	notServed.SetWorkload(native)

	pod := func(annotations map[string]string, ref *v1.WorkloadReference) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Annotations: annotations}, Spec: v1.PodSpec{WorkloadRef: ref}}
	}
	refs := func(workload, podGroup string) map[string]string {
		return map[string]string{gang.WorkloadAnnotation: workload, gang.PodGroupAnnotation: podGroup}
	}
	for _, tc := range []struct {
		name         string
		resolver     *Resolver
		pod          *v1.Pod
		wantMinCount int32
		wantTimeout  time.Duration
		wantCode     string
		wantInMsg    []string
	}{
		{name: "gang", resolver: served, pod: pod(refs("job", "workers"), nil), wantMinCount: 3, wantTimeout: 30 * time.Second},
		{name: "basic", resolver: served, pod: pod(refs("job", "driver"), nil), wantTimeout: 30 * time.Second},
		{name: "spec.workloadRef wins over the annotations", resolver: served,
			pod: pod(refs("job", "workers"), &v1.WorkloadReference{Name: "job", PodGroup: "workers"}), wantMinCount: 5},
		{name: "CRD not installed", resolver: notServed, pod: pod(refs("job", "workers"), nil),
			wantCode: PortableAPINotServed, wantInMsg: []string{PortableGroupVersion, "manifests/crds"}},
		{name: "missing Workload", resolver: served, pod: pod(refs("nope", "workers"), nil),
			wantCode: "WorkloadNotFound", wantInMsg: []string{`"nope"`, gang.WorkloadAnnotation}},
		{name: "missing podGroup", resolver: served, pod: pod(refs("job", "ps"), nil),
			wantCode: "PodGroupNotFound", wantInMsg: []string{`"ps"`, "driver, workers"}},
		{name: "no Workload annotation", resolver: served, pod: pod(map[string]string{gang.PodGroupAnnotation: "workers"}, nil),
			wantCode: InvalidReference, wantInMsg: []string{gang.WorkloadAnnotation + " is missing"}},
		{name: "no podGroup annotation", resolver: served, pod: pod(map[string]string{gang.WorkloadAnnotation: "job"}, nil),
			wantCode: InvalidReference, wantInMsg: []string{gang.PodGroupAnnotation + " is missing"}},
		{name: "values that are not DNS names", resolver: served,
			pod:      pod(map[string]string{gang.WorkloadAnnotation: "Job!", gang.PodGroupAnnotation: "w_1", gang.ReplicaKeyAnnotation: "A.B"}, nil),
			wantCode: InvalidReference, wantInMsg: []string{`"Job!"`, `"w_1"`, `"A.B"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy, reason := tc.resolver.Resolve(tc.pod)
			if tc.wantCode == "" {
				if reason != nil {
					t.Fatalf("unexpected reason to wait: %v", reason)
				}
				if policy.MinCount != tc.wantMinCount || policy.PermitTimeout != tc.wantTimeout {
					t.Fatalf("policy = %+v, want minCount %d and timeout %v", policy, tc.wantMinCount, tc.wantTimeout)
				}
				return
			}
			wantReason(t, reason, tc.wantCode, tc.wantInMsg...)
		})
	}
}

// wantReason checks the reason to wait has the code and its message says
// each of inMsg.
func wantReason(t *testing.T, reason *Reason, code string, inMsg ...string) {
	t.Helper()
	if reason == nil || reason.Code != code {
		t.Fatalf("reason = %v, want one with code %s", reason, code)
	}
	for _, s := range inMsg {
		if !strings.Contains(reason.Message, s) {
			t.Errorf("message %q does not contain %s", reason.Message, s)
		}
	}
}
