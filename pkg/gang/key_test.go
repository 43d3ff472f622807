package gang

import (
	"encoding/json"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pod's references are read in order: spec.workloadRef, the portable
// annotations, the PodGroup label; the ones passed over are named.
func TestKeyOfPrecedence(t *testing.T) {
	ref := &v1.WorkloadReference{Name: "native", PodGroup: "workers"}
	annotations := map[string]string{WorkloadAnnotation: "portable", PodGroupAnnotation: "workers"}
	label := map[string]string{PodGroupLabel: "pg"}
	native := Key{Namespace: "ns", Workload: "native", PodGroup: "workers"}
	portable := Key{Namespace: "ns", Workload: "portable", PodGroup: "workers", Source: SourcePortable}
	podGroup := Key{Namespace: "ns", Workload: "pg", Source: SourcePodGroup}
	for _, tc := range []struct {
		name        string
		ref         *v1.WorkloadReference
		annotations map[string]string
		labels      map[string]string
		want        Key
		ignored     []string
	}{
		{name: "workloadRef", ref: ref, want: native},
		{name: "annotations", annotations: annotations, want: portable},
		{name: "label", labels: label, want: podGroup},
		{name: "workloadRef over annotations", ref: ref, annotations: annotations, want: native, ignored: []string{"annotations"}},
		{name: "workloadRef over the label", ref: ref, labels: label, want: native, ignored: []string{"label " + PodGroupLabel}},
		{name: "annotations over the label", annotations: annotations, labels: label, want: portable, ignored: []string{"label " + PodGroupLabel}},
		{name: "all three", ref: ref, annotations: annotations, labels: label, want: native, ignored: []string{"annotations", "label"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Annotations: tc.annotations, Labels: tc.labels},
				Spec: v1.PodSpec{WorkloadRef: tc.ref}}
			if got, ok := KeyOf(pod); !ok || got != tc.want {
				t.Fatalf("KeyOf = %v, %v; want %v", got, ok, tc.want)
			}
			ignored := IgnoredReference(pod)
			if (ignored == "") != (len(tc.ignored) == 0) {
				t.Fatalf("IgnoredReference = %q, want it to name %v", ignored, tc.ignored)
			}
			for _, s := range tc.ignored {
				if !strings.Contains(ignored, s) {
					t.Errorf("IgnoredReference = %q does not name %s", ignored, s)
				}
			}
		})
	}
	if got := podGroup.String(); got != "podgroup:ns/pg" {
		t.Errorf("String = %q", got)
	}
	if podGroup.Compare(Key{Namespace: "ns", Workload: "pg"}) <= 0 || podGroup.Compare(podGroup) != 0 {
		t.Errorf("a PodGroup's gang must sort after a Workload's of the same name, and equal itself")
	}
	data, err := json.Marshal(podGroup)
	if err != nil || string(data) != `{"namespace":"ns","workload":"pg","source":"podgroup"}` {
		t.Fatalf("JSON = %s, %v", data, err)
	}
	var back Key
	if err := json.Unmarshal(data, &back); err != nil || back != podGroup {
		t.Fatalf("JSON round trip = %v, %v", back, err)
	}
}
