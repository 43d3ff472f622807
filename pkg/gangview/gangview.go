// Package gangview summarises, from what the API server holds (Workloads,
// pods and their events), how far each gang has come and why it waits. It is
// the client's view, for people: the demo's live table and its summary. It
// reads objects a caller listed; it has no client code of its own.
package gangview

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	v1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	"k8s.io/apimachinery/pkg/types"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// State is where a gang stands, as a user reads it.
type State string

const (
	// WaitingForWorkload: the Workload or its podGroup does not exist.
	WaitingForWorkload State = "WaitingForWorkload"
	// WaitingForMembers: fewer members exist than the gang's minCount.
	WaitingForMembers State = "WaitingForMembers"
	// Pending: enough members exist and none is bound (no room yet, or
	// backing off after a failed attempt).
	Pending State = "Pending"
	// Binding: some members are bound but fewer than minCount. The
	// scheduler binds a gang's members one by one, so this is seen briefly
	// while a gang is admitted; a gang that stays Binding is partially
	// placed.
	Binding State = "Binding"
	// Running: the gang is placed (at least minCount members bound; for a
	// basic podGroup, any member) and not all have finished.
	Running State = "Running"
	// Succeeded: every member ran to completion.
	Succeeded State = "Succeeded"
	// Failed: some member failed and none is still running.
	Failed State = "Failed"
)

// Gang is one row of the view.
type Gang struct {
	Key gang.Key `json:"gang"`
	// IsGang tells the gang policy from the basic one; MinCount is 0 for
	// basic podGroups and while the Workload is missing.
	IsGang   bool  `json:"isGang"`
	MinCount int32 `json:"minCount,omitempty"`
	// Present counts the members that exist; Bound those with a node;
	// Running, Succeeded and Failed go by pod phase.
	Present   int   `json:"present"`
	Bound     int   `json:"bound"`
	Running   int   `json:"running"`
	Succeeded int   `json:"succeeded"`
	Failed    int   `json:"failed"`
	State     State `json:"state"`
	// Reason is the latest word of the scheduler on a member still pending:
	// an event note or the PodScheduled condition's message.
	Reason string `json:"reason,omitempty"`
}

// Partial reports whether fewer than minCount members of a gang are bound,
// but some are: the state a gang scheduler must never leave a gang in.
func (g Gang) Partial() bool {
	return g.IsGang && g.Bound > 0 && g.Bound < int(g.MinCount)
}

// Workloads are the Workloads of both APIs and scheduler-plugins'
// PodGroups: the objects gangs come from.
type Workloads struct {
	Native    []schedulingv1alpha1.Workload
	Portable  []wcsv1alpha1.Workload
	PodGroups []spv1alpha1.PodGroup
}

// Build groups the pods that reference a Workload (by spec.workloadRef or
// the portable annotations) or a PodGroup (by its label) into gangs, and reads their policy from the
// Workloads and their reason from the events. Pods being deleted are left
// out. Rows come sorted by key.
func Build(workloads Workloads, pods []v1.Pod, events []eventsv1.Event) []Gang {
	latest := latestNotes(events)
	rows := map[gang.Key]*Gang{}
	reasonAt := map[gang.Key]time.Time{}
	for i := range pods {
		pod := &pods[i]
		key, ok := gang.KeyOf(pod)
		if !ok || pod.DeletionTimestamp != nil {
			continue
		}
		row := rows[key]
		if row == nil {
			row = &Gang{Key: key}
			rows[key] = row
		}
		row.Present++
		if pod.Spec.NodeName != "" {
			row.Bound++
		}
		switch pod.Status.Phase {
		case v1.PodRunning:
			row.Running++
		case v1.PodSucceeded:
			row.Succeeded++
		case v1.PodFailed:
			row.Failed++
		}
		if pod.Spec.NodeName == "" {
			if note, at := pendingNote(pod, latest); note != "" && !at.Before(reasonAt[key]) {
				row.Reason, reasonAt[key] = note, at
			}
		}
	}

	// minCounts holds, per Workload, the minCount of each podGroup (0 for
	// basic).
	minCounts := map[gang.WorkloadKey]map[string]int32{}
	for _, w := range workloads.Native {
		minCounts[gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name}] = minCountsOf(&w.Spec)
	}
	for _, w := range workloads.Portable {
		spec := w.Spec.BuiltIn()
		minCounts[gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name, Source: gang.SourcePortable}] = minCountsOf(&spec)
	}
	for _, pg := range workloads.PodGroups {
		// A minMember below 2 places each pod on its own (workloadref).
		minCount := pg.Spec.MinMember
		if minCount < 2 {
			minCount = 0
		}
		minCounts[gang.WorkloadKey{Namespace: pg.Namespace, Name: pg.Name, Source: gang.SourcePodGroup}] = map[string]int32{"": minCount}
	}
	out := make([]Gang, 0, len(rows))
	for _, row := range rows {
		minCount, found := minCounts[row.Key.WorkloadKey()][row.Key.PodGroup]
		if minCount > 0 {
			row.IsGang, row.MinCount = true, minCount
		}
		row.State = stateOf(row, found)
		out = append(out, *row)
	}
	slices.SortFunc(out, func(a, b Gang) int { return a.Key.Compare(b.Key) })
	return out
}

// minCountsOf maps each podGroup of the spec to its minCount (0 for basic).
func minCountsOf(spec *schedulingv1alpha1.WorkloadSpec) map[string]int32 {
	groups := map[string]int32{}
	for _, g := range spec.PodGroups {
		groups[g.Name] = 0
		if g.Policy.Gang != nil {
			groups[g.Name] = g.Policy.Gang.MinCount
		}
	}
	return groups
}

func stateOf(g *Gang, found bool) State {
	// A basic podGroup's pods schedule one by one: one bound is running.
	want := 1
	if g.IsGang {
		want = int(g.MinCount)
	}
	switch {
	case !found:
		return WaitingForWorkload
	case g.Succeeded == g.Present:
		return Succeeded
	case g.Failed > 0 && g.Running == 0 && g.Bound == g.Present:
		return Failed
	case g.IsGang && g.Present < want && g.Bound == 0:
		return WaitingForMembers
	case g.Bound == 0:
		return Pending
	case g.Bound < want:
		return Binding
	default:
		return Running
	}
}

type note struct {
	text string
	at   time.Time
}

// latestNotes keeps, per pod, the note of its most recent event.
func latestNotes(events []eventsv1.Event) map[types.UID]note {
	latest := map[types.UID]note{}
	for i := range events {
		e := &events[i]
		at := eventTime(e)
		if prev, ok := latest[e.Regarding.UID]; ok && prev.at.After(at) {
			continue
		}
		latest[e.Regarding.UID] = note{text: fmt.Sprintf("%s: %s", e.Reason, e.Note), at: at}
	}
	return latest
}

func eventTime(e *eventsv1.Event) time.Time {
	if e.Series != nil {
		return e.Series.LastObservedTime.Time
	}
	return cmp.Or(e.EventTime.Time, e.DeprecatedLastTimestamp.Time, e.CreationTimestamp.Time)
}

// pendingNote is the newer of the pod's latest event and its PodScheduled
// condition.
func pendingNote(pod *v1.Pod, latest map[types.UID]note) (string, time.Time) {
	n := latest[pod.UID]
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Message != "" && !c.LastTransitionTime.Time.Before(n.at) {
			n = note{text: fmt.Sprintf("%s: %s", c.Reason, c.Message), at: c.LastTransitionTime.Time}
		}
	}
	return n.text, n.at
}

// TableOptions shape WriteTable's output.
type TableOptions struct {
	// Namespace adds a NAMESPACE column first.
	Namespace bool
	// MaxReason cuts longer reasons to that many runes (0: no limit).
	MaxReason int
}

// WriteTable prints the rows as a kubectl-style table.
func WriteTable(w io.Writer, rows []Gang, opts TableOptions) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if opts.Namespace {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "WORKLOAD\tPODGROUP\tREPLICA\tPOLICY\tPRESENT\tBOUND\tRUNNING\tDONE\tSTATE\tREASON")
	for _, g := range rows {
		if opts.Namespace {
			fmt.Fprint(tw, g.Key.Namespace+"\t")
		}
		policy, present := "basic", strconv.Itoa(g.Present)
		switch {
		case g.State == WaitingForWorkload:
			policy = "?"
		case g.IsGang:
			policy = fmt.Sprintf("gang(%d)", g.MinCount)
			present = fmt.Sprintf("%d/%d", g.Present, g.MinCount)
		}
		reason := ""
		if g.State != Running && g.State != Succeeded {
			reason = cut(g.Reason, opts.MaxReason)
		}
		// A PodGroup is its own gang: no podGroup of a Workload.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", g.Key.Workload, cmp.Or(g.Key.PodGroup, "-"),
			cmp.Or(g.Key.ReplicaKey, "-"), policy, present, g.Bound, g.Running, g.Succeeded, g.State, reason)
	}
	return tw.Flush()
}

func cut(s string, n int) string {
	r := []rune(s)
	if n <= 0 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
