package workloadref

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	splisters "github.com/workload-coscheduling/workload-coscheduling/pkg/generated/listers/schedulerplugins/v1alpha1"
)

func TestResolvePodGroup(t *testing.T) {
	pg := func(name string, minMember int32, timeout *int32) *spv1alpha1.PodGroup {
		return &spv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: spv1alpha1.PodGroupSpec{MinMember: minMember, ScheduleTimeoutSeconds: timeout,
				MinResources: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4")}}}
	}
	served := New(true, nil)
	served.ServePodGroups(nil)
	served.SetPodGroup(pg("gang", 4, ptr.To[int32](20)))
	served.SetPodGroup(pg("one", 1, nil))
	served.SetPodGroup(pg("long", 3, ptr.To[int32](100000)))
	// A PodGroup the informer's store has and its handler has not delivered.
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := indexer.Add(pg("stored", 2, nil)); err != nil {
		t.Fatal(err)
	}
	fromStore := New(true, nil)
	fromStore.ServePodGroups(splisters.NewPodGroupLister(indexer))
	notServed := New(true, nil)

	key := func(name string) gang.Key {
		return gang.Key{Namespace: "ns", Workload: name, Source: gang.SourcePodGroup}
	}
	for _, tc := range []struct {
		name         string
		resolver     *Resolver
		key          gang.Key
		wantMinCount int32
		wantTimeout  time.Duration
		wantCode     string
		wantInMsg    []string
	}{
		{name: "a gang of minMember, its timeout", resolver: served, key: key("gang"), wantMinCount: 4, wantTimeout: 20 * time.Second},
		{name: "minMember 1: each pod on its own", resolver: served, key: key("one")},
		{name: "a timeout above the cap is clamped", resolver: served, key: key("long"), wantMinCount: 3, wantTimeout: MaxPermitWaitingTime},
		{name: "read from the store", resolver: fromStore, key: key("stored"), wantMinCount: 2},
		{name: "missing", resolver: served, key: key("nope"), wantCode: PodGroupMissing, wantInMsg: []string{`"nope"`, gang.PodGroupLabel, `"ns"`}},
		{name: "CRD not installed", resolver: notServed, key: key("gang"), wantCode: PodGroupAPINotServed,
			wantInMsg: []string{PodGroupGroupVersion, "manifests/podgroup-crd", "podGroups.installCRD"}},
		{name: "a label value that cannot name a PodGroup", resolver: served, key: key("Big_Job"), wantCode: InvalidPodGroupLabel,
			wantInMsg: []string{`"Big_Job"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy, reason := tc.resolver.ResolveKey(tc.key)
			if tc.wantCode == "" {
				if reason != nil {
					t.Fatalf("unexpected reason to wait: %v", reason)
				}
				if policy.MinCount != tc.wantMinCount || policy.PermitTimeout != tc.wantTimeout {
					t.Fatalf("policy = %+v, want minCount %d and timeout %v", policy, tc.wantMinCount, tc.wantTimeout)
				}
				if q := policy.MinResources[v1.ResourceCPU]; q.String() != "4" {
					t.Fatalf("minResources = %v", policy.MinResources)
				}
				return
			}
			wantReason(t, reason, tc.wantCode, tc.wantInMsg...)
		})
	}
	// A PodGroup is no Workload of the same name.
	if obj := served.Workload(key("gang")); obj == nil {
		t.Fatalf("no object for the PodGroup's gang")
	}
	if obj := served.Workload(gang.Key{Namespace: "ns", Workload: "gang", PodGroup: "workers"}); obj != nil {
		t.Fatalf("a built-in Workload's gang resolved to %T", obj)
	}
}

// The topology annotations of a Workload work on a PodGroup too.
func TestPodGroupTopology(t *testing.T) {
	r := New(true, nil)
	r.ServePodGroups(nil)
	r.SetPodGroup(&spv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job",
		Annotations: map[string]string{TopologyRequiredAnnotation: "example.com/rack"}}, Spec: spv1alpha1.PodGroupSpec{MinMember: 2}})
	policy, reason := r.ResolveKey(gang.Key{Namespace: "ns", Workload: "job", Source: gang.SourcePodGroup})
	if reason != nil || policy.Topology.IsZero() || policy.Topology.String() != "required example.com/rack" {
		t.Fatalf("policy %+v (topology %v), reason %v", policy, policy.Topology, reason)
	}
}
