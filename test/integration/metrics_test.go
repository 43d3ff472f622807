package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics/legacyregistry"
)

// metricsCases follow the plugin's metrics through a gang's lifecycle. The
// scheduler runs in this process, so its /metrics registry is read directly;
// tests share it, so they compare before and after.
var metricsCases = []clusterCase{
	{"metrics count the rollbacks, the admission and the waiting gangs, and the index empties", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		before := scrape(t)
		c.addNodes(t, ns, 3, "1")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 4})
		c.createGang(t, ns, "job", "workers", "", "w", 4, "1")
		c.waitEvent(t, ns, "w-0", "FailedScheduling", "rejected: member")
		waitMetric(t, "a backing-off gang", func(m metricSet) bool {
			return m[`workload_coscheduling_gangs_waiting{state="backing_off"}`] >= 1
		})
		failed := scrape(t)
		if d := failed.delta(before, `workload_coscheduling_gang_attempts_total{result="rejected_in_postfilter"}`); d < 1 {
			t.Errorf("rejected_in_postfilter attempts grew by %v, want >= 1", d)
		}
		if d := failed.delta(before, `workload_coscheduling_members_rolled_back_total`); d < 1 {
			t.Errorf("members rolled back grew by %v, want >= 1 (3 members reserved the 3 nodes)", d)
		}

		// Room for the fourth member: the gang is admitted after its backoff.
		if err := c.createNode(ns, ns+"-node-3", "1"); err != nil {
			t.Fatal(err)
		}
		c.waitBound(t, ns, 30*time.Second, "w-0", "w-1", "w-2", "w-3")
		waitMetric(t, "the gang's admission", func(m metricSet) bool {
			return m.delta(before, `workload_coscheduling_gang_admission_duration_seconds_count`) == 1
		})
		admitted := scrape(t)
		for _, name := range []string{
			`workload_coscheduling_gang_attempts_total{result="admitted"}`,
			`workload_coscheduling_permit_wait_duration_seconds_count{result="admitted"}`,
		} {
			if d := admitted.delta(before, name); d != 1 {
				t.Errorf("%s grew by %v, want 1", name, d)
			}
		}

		c.deleteGang(t, ns, "w")
		waitMetric(t, "the index to forget the gang", func(m metricSet) bool {
			return m[`workload_coscheduling_gangs_tracked`] <= before[`workload_coscheduling_gangs_tracked`]
		})
	}},
	// After the case above, which moved every metric: a metric vector with no
	// sample yet is not gathered.
	{"the chart's Grafana dashboard queries only metrics the scheduler serves", func(t *testing.T, c *cluster) {
		dashboard, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "workload-coscheduling.json"))
		if err != nil {
			t.Fatal(err)
		}
		families, err := legacyregistry.DefaultGatherer.Gather()
		if err != nil {
			t.Fatal(err)
		}
		served := map[string]bool{}
		for _, f := range families {
			served[f.GetName()] = true
		}
		queried := regexp.MustCompile(`workload_coscheduling_[a-z_]+`).FindAllString(string(dashboard), -1)
		if len(queried) == 0 {
			t.Fatal("the dashboard queries no workload_coscheduling_ metric")
		}
		for _, name := range queried {
			if base := strings.TrimSuffix(name, "_bucket"); !served[base] {
				t.Errorf("the dashboard queries %s, which the scheduler does not serve", name)
			}
		}
	}},
}

// eventCases check that a gang's events stay bounded per attempt, whatever its
// size.
var eventCases = []clusterCase{
	{"a waiting gang of 200 members: its events do not grow with its members on each attempt", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		before := scrape(t)
		c.addNodes(t, ns, 3, "1")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 200})
		c.createGang(t, ns, "job", "workers", "", "w", 200, "1")
		// Each attempt reserves the 3 nodes, fails on the 4th member and is
		// rolled back: one GangRolledBack event on the Workload per attempt.
		// The second attempt comes after the 10s backoff.
		first := c.waitOurEvents(t, ns, before, 1)
		second := c.waitOurEvents(t, ns, before, 2)
		t.Logf("our events: %d after the first attempt, %d after the second", first, second)
		// WaitingForGangMembers and GangBackoff, each on one member and on the
		// Workload, and the rollback on the Workload.
		if first > 6 {
			t.Errorf("%d events after the first attempt of a gang of 200, want at most 6", first)
		}
		if grew := second - first; grew > 3 {
			t.Errorf("the second attempt added %d events, want at most 3 (one on the Workload, not one per member)", grew)
		}
	}},
}

// ourReasons are the reasons of the plugin's events.
var ourReasons = map[string]bool{"WaitingForGangMembers": true, "GangBackoff": true, "GangRolledBack": true, "GangAdmitted": true,
	"GangPreempting": true, "GangPreempted": true, "WaitingForPreemptionVictims": true,
	"WorkloadNotFound": true, "PodGroupNotFound": true}

// waitOurEvents waits until the scheduler has rolled back attempts gangs
// since before (the events of the same rollback merge into a series, so the
// metric counts the attempts), and returns how many events of the plugin
// exist in the namespace then.
func (c *cluster) waitOurEvents(t *testing.T, ns string, before metricSet, attempts int) int {
	t.Helper()
	waitMetric(t, fmt.Sprintf("%d rolled back attempts", attempts), func(m metricSet) bool {
		return m.delta(before, `workload_coscheduling_gang_attempts_total{result="rejected_in_postfilter"}`) >= float64(attempts)
	})
	events, err := c.client.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ours := 0
	for _, e := range events.Items {
		if ourReasons[e.Reason] {
			ours++
		}
	}
	return ours
}

// metricSet maps a sample, written name{label="value",...}, to its value;
// histograms contribute name_count.
type metricSet map[string]float64

func (m metricSet) delta(before metricSet, name string) float64 { return m[name] - before[name] }

func scrape(t *testing.T) metricSet {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	set := metricSet{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "workload_coscheduling_") {
			continue
		}
		for _, m := range f.GetMetric() {
			name := f.GetName()
			value := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if h := m.GetHistogram(); h != nil {
				name, value = name+"_count", float64(h.GetSampleCount())
			}
			set[name+labels(m.GetLabel())] = value
		}
	}
	return set
}

func labels(pairs []*dto.LabelPair) string {
	if len(pairs) == 0 {
		return ""
	}
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.GetName() + `="` + p.GetValue() + `"`
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func waitMetric(t *testing.T, what string, ok func(metricSet) bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !ok(scrape(t)) {
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %s; they are %v", what, scrape(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
