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
			if reason == nil || reason.Code != tc.wantCode {
				t.Fatalf("reason = %v, want one with code %s", reason, tc.wantCode)
			}
			for _, s := range tc.wantInMsg {
				if !strings.Contains(reason.Message, s) {
					t.Errorf("message %q does not contain %s", reason.Message, s)
				}
			}
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
