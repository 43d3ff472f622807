package workloadcoscheduling

import (
	"fmt"
	"sort"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// queued builds a queue entry: a pod created and queued at the given second,
// in the given gang ("" for none).
func queued(t testing.TB, name string, priority int32, second int, workload, replica string) *framework.QueuedPodInfo {
	pod := member("ns", name, workload, "workers", replica, "")
	pod.UID = types.UID(name)
	pod.CreationTimestamp = metav1.NewTime(epoch.Add(time.Duration(second) * time.Second))
	pod.Spec.Priority = ptr.To(priority)
	pi, err := framework.NewPodInfo(pod)
	if err != nil {
		t.Fatal(err)
	}
	return &framework.QueuedPodInfo{PodInfo: pi, Timestamp: pod.CreationTimestamp.Time}
}

// observeAll feeds the gang members to the index, as the informer would.
func observeAll(pl *WorkloadCoscheduling, infos []*framework.QueuedPodInfo) {
	for _, info := range infos {
		if key, ok := gang.KeyOf(info.Pod); ok {
			pl.index.ObservePod(key, info.Pod, false, 0, nil, time.Now())
		}
	}
}

func sortQueue(pl *WorkloadCoscheduling, infos []*framework.QueuedPodInfo) []string {
	sorted := append([]*framework.QueuedPodInfo(nil), infos...)
	sort.SliceStable(sorted, func(i, j int) bool { return pl.Less(sorted[i], sorted[j]) })
	names := make([]string, len(sorted))
	for i, info := range sorted {
		names[i] = info.Pod.Name
	}
	return names
}

func TestLessGroupsGangs(t *testing.T) {
	tests := []struct {
		name   string
		pods   func(t *testing.T) []*framework.QueuedPodInfo
		failed []gang.Key // gangs that failed an attempt after all pods were queued
		want   []string
	}{
		{
			name: "members of a gang leave together, in the order the gangs came",
			pods: func(t *testing.T) []*framework.QueuedPodInfo {
				return []*framework.QueuedPodInfo{
					queued(t, "a-0", 0, 1, "a", ""), queued(t, "b-0", 0, 2, "b", ""),
					queued(t, "a-1", 0, 3, "a", ""), queued(t, "b-1", 0, 4, "b", ""),
					queued(t, "a-2", 0, 5, "a", ""),
				}
			},
			want: []string{"a-0", "a-1", "a-2", "b-0", "b-1"},
		},
		{
			name: "priority first",
			pods: func(t *testing.T) []*framework.QueuedPodInfo {
				return []*framework.QueuedPodInfo{
					queued(t, "a-0", 0, 1, "a", ""), queued(t, "b-0", 10, 2, "b", ""),
					queued(t, "a-1", 0, 3, "a", ""), queued(t, "b-1", 10, 4, "b", ""),
					queued(t, "plain", 100, 9, "", ""),
				}
			},
			want: []string{"plain", "b-0", "b-1", "a-0", "a-1"},
		},
		{
			name: "a gang is one priority, its highest member's: members stay together",
			pods: func(t *testing.T) []*framework.QueuedPodInfo {
				return []*framework.QueuedPodInfo{
					queued(t, "a-0", 0, 1, "a", ""), queued(t, "b-0", 5, 2, "b", ""),
					queued(t, "a-1", 10, 3, "a", ""), queued(t, "b-1", 5, 4, "b", ""),
					queued(t, "plain", 7, 9, "", ""),
				}
			},
			want: []string{"a-0", "a-1", "plain", "b-0", "b-1"},
		},
		{
			name: "replica keys are separate gangs",
			pods: func(t *testing.T) []*framework.QueuedPodInfo {
				return []*framework.QueuedPodInfo{
					queued(t, "r1-0", 0, 1, "job", "1"), queued(t, "r0-0", 0, 2, "job", "0"),
					queued(t, "r1-1", 0, 3, "job", "1"), queued(t, "r0-1", 0, 4, "job", "0"),
				}
			},
			want: []string{"r1-0", "r1-1", "r0-0", "r0-1"},
		},
		{
			name: "plain pods keep the order they were queued in, between gangs by time",
			pods: func(t *testing.T) []*framework.QueuedPodInfo {
				return []*framework.QueuedPodInfo{
					queued(t, "p-late", 0, 7, "", ""), queued(t, "a-0", 0, 2, "a", ""),
					queued(t, "p-early", 0, 1, "", ""), queued(t, "a-1", 0, 8, "a", ""),
				}
			},
			want: []string{"p-early", "a-0", "a-1", "p-late"},
		},
		{
			name: "a gang that failed goes behind the gangs that came since",
			pods: func(t *testing.T) []*framework.QueuedPodInfo {
				return []*framework.QueuedPodInfo{
					queued(t, "old-0", 0, 1, "old", ""), queued(t, "old-1", 0, 2, "old", ""),
					queued(t, "new-0", 0, 3, "new", ""), queued(t, "new-1", 0, 4, "new", ""),
				}
			},
			failed: []gang.Key{{Namespace: "ns", Workload: "old", PodGroup: "workers"}},
			want:   []string{"new-0", "new-1", "old-0", "old-1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl := &WorkloadCoscheduling{index: gang.NewIndex(gang.Config{})}
			pods := tc.pods(t)
			observeAll(pl, pods)
			for _, k := range tc.failed {
				pl.index.Fail(k, 0, gang.OutcomeUnfit, epoch.Add(time.Hour))
			}
			if got := sortQueue(pl, pods); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("order = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLessIsStrictWeakOrdering checks the axioms over every pair and triple of
// a mixed queue with ties in priority and time.
func TestLessIsStrictWeakOrdering(t *testing.T) {
	var infos []*framework.QueuedPodInfo
	for i := 0; i < 18; i++ {
		workload := []string{"", "a", "b"}[i%3]
		infos = append(infos, queued(t, fmt.Sprintf("p%d", i), int32(i%2), i%4, workload, fmt.Sprint(i%2)))
	}
	pl := &WorkloadCoscheduling{index: gang.NewIndex(gang.Config{})}
	observeAll(pl, infos[:12]) // the rest are not in the index yet
	less := func(a, b *framework.QueuedPodInfo) bool { return pl.Less(a, b) }
	for _, a := range infos {
		if less(a, a) {
			t.Fatalf("irreflexivity: Less(%s, %s)", a.Pod.Name, a.Pod.Name)
		}
		for _, b := range infos {
			if less(a, b) && less(b, a) {
				t.Fatalf("asymmetry: %s and %s are each less than the other", a.Pod.Name, b.Pod.Name)
			}
			for _, c := range infos {
				if less(a, b) && less(b, c) && !less(a, c) {
					t.Fatalf("transitivity: %s < %s < %s but not %s < %s", a.Pod.Name, b.Pod.Name, c.Pod.Name, a.Pod.Name, c.Pod.Name)
				}
				incomparable := func(x, y *framework.QueuedPodInfo) bool { return !less(x, y) && !less(y, x) }
				if incomparable(a, b) && incomparable(b, c) && !incomparable(a, c) {
					t.Fatalf("transitivity of incomparability: %s ~ %s ~ %s", a.Pod.Name, b.Pod.Name, c.Pod.Name)
				}
			}
		}
	}
}

func TestLessAllocatesNothing(t *testing.T) {
	pl := &WorkloadCoscheduling{index: gang.NewIndex(gang.Config{})}
	a, b := queued(t, "a-0", 0, 1, "a", "0"), queued(t, "a-1", 0, 1, "a", "0")
	plain := queued(t, "plain", 0, 1, "", "")
	observeAll(pl, []*framework.QueuedPodInfo{a, b})
	if n := testing.AllocsPerRun(1000, func() { pl.Less(a, b); pl.Less(b, plain); pl.Less(plain, a) }); n != 0 {
		t.Fatalf("Less allocates %v times per call", n)
	}
}

func BenchmarkLess(b *testing.B) {
	pl := &WorkloadCoscheduling{index: gang.NewIndex(gang.Config{})}
	x, y := queued(b, "a-0", 0, 1, "a", "0"), queued(b, "b-1", 0, 1, "b", "0")
	observeAll(pl, []*framework.QueuedPodInfo{x, y})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		pl.Less(x, y)
	}
}
