package workloadref

import (
	"reflect"
	"strings"
	"testing"

	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

func TestTopologyOf(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        *Topology
		problems    []string
	}{
		{name: "none"},
		{name: "required", annotations: map[string]string{TopologyRequiredAnnotation: "example.com/rack"},
			want: &Topology{Required: "example.com/rack"}},
		{name: "preferred, spaces trimmed", annotations: map[string]string{TopologyPreferredAnnotation: "rack, block,topology.kubernetes.io/zone"},
			want: &Topology{Preferred: []string{"rack", "block", "topology.kubernetes.io/zone"}}},
		{name: "both", annotations: map[string]string{TopologyRequiredAnnotation: "zone", TopologyPreferredAnnotation: "rack"},
			want: &Topology{Required: "zone", Preferred: []string{"rack"}}},
		{name: "required not a label key", annotations: map[string]string{TopologyRequiredAnnotation: "rack/"},
			problems: []string{TopologyRequiredAnnotation}},
		{name: "too many preferred keys", annotations: map[string]string{TopologyPreferredAnnotation: "a,b,c,d"},
			problems: []string{"4 keys, at most 3"}},
		{name: "a key twice", annotations: map[string]string{TopologyPreferredAnnotation: "a,b,a"},
			problems: []string{`key "a" is named twice`}},
		{name: "an empty key", annotations: map[string]string{TopologyPreferredAnnotation: "a,,b"},
			problems: []string{TopologyPreferredAnnotation}},
		{name: "a bad one ignored, a good one kept", annotations: map[string]string{TopologyRequiredAnnotation: "zone", TopologyPreferredAnnotation: "UPPER/rack"},
			want: &Topology{Required: "zone"}, problems: []string{TopologyPreferredAnnotation}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := TopologyOf(&metav1.ObjectMeta{Annotations: tc.annotations})
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("TopologyOf = %+v, want %+v", got, tc.want)
			}
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d", problems, len(tc.problems))
			}
			for i, want := range tc.problems {
				if !strings.Contains(problems[i], want) || !strings.Contains(problems[i], "ignored") {
					t.Errorf("problem %q, want it to name %q and say it is ignored", problems[i], want)
				}
			}
		})
	}
}

// A portable podGroup's schedulingConstraints take the place of the
// Workload's annotations for that group; another group keeps them.
func TestPortableTopologyFields(t *testing.T) {
	r := New(true, nil)
	r.ServePortable(nil)
	gangPolicy := wcsv1alpha1.PodGroupPolicy{Gang: &wcsv1alpha1.GangSchedulingPolicy{MinCount: 2}}
	r.SetPortableWorkload(&wcsv1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job", Annotations: map[string]string{TopologyRequiredAnnotation: "zone"}},
		Spec: wcsv1alpha1.WorkloadSpec{PodGroups: []wcsv1alpha1.PodGroup{
			{Name: "workers", Policy: gangPolicy, SchedulingConstraints: &wcsv1alpha1.PodGroupSchedulingConstraints{
				Topology:          []wcsv1alpha1.TopologyConstraint{{Key: "rack"}},
				PreferredTopology: []wcsv1alpha1.TopologyConstraint{{Key: "host"}},
			}},
			{Name: "ps", Policy: gangPolicy},
		}},
	})
	key := gang.Key{Namespace: "ns", Workload: "job", PodGroup: "workers", Source: gang.SourcePortable}
	p, reason := r.ResolveKey(key)
	if reason != nil || !reflect.DeepEqual(p.Topology, &Topology{Required: "rack", Preferred: []string{"host"}}) {
		t.Fatalf("workers: %+v, %v; want its own constraints", p.Topology, reason)
	}
	key.PodGroup = "ps"
	if p, _ := r.ResolveKey(key); !reflect.DeepEqual(p.Topology, &Topology{Required: "zone"}) {
		t.Fatalf("ps: %+v, want the Workload's annotation", p.Topology)
	}
	r.SetWorkload(&schedulingv1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "plain"},
		Spec: schedulingv1alpha1.WorkloadSpec{PodGroups: []schedulingv1alpha1.PodGroup{{Name: "workers",
			Policy: schedulingv1alpha1.PodGroupPolicy{Gang: &schedulingv1alpha1.GangSchedulingPolicy{MinCount: 2}}}}}})
	if p, _ := r.ResolveKey(gang.Key{Namespace: "ns", Workload: "plain", PodGroup: "workers"}); p.Topology != nil {
		t.Fatalf("a Workload without annotations has topology %+v", p.Topology)
	}
}
