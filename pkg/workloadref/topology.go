package workloadref

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// The Workload annotations that place its gangs inside topology domains,
// for every gang podGroup of the Workload (the built-in 1.35 Workload has
// no field for it). A portable Workload's podGroup with
// schedulingConstraints uses those instead.
const (
	TopologyRequiredAnnotation  = gang.TopologyRequiredAnnotation
	TopologyPreferredAnnotation = gang.TopologyPreferredAnnotation
)

// MaxPreferredTopologyKeys is how many levels a preference may name.
const MaxPreferredTopologyKeys = 3

// Topology is where a gang's members land together: inside one domain of a
// node label key, the nodes that share its value.
type Topology struct {
	// Required is the key every member must share a domain of; empty for
	// none.
	Required string
	// Preferred are keys tried narrowest first; none keeps a gang pending.
	Preferred []string
}

// IsZero reports whether the gang may go anywhere.
func (t *Topology) IsZero() bool { return t == nil || (t.Required == "" && len(t.Preferred) == 0) }

// String is the constraint as a user wrote it, for events and logs.
func (t *Topology) String() string {
	if t.IsZero() {
		return "none"
	}
	var parts []string
	if t.Required != "" {
		parts = append(parts, "required "+t.Required)
	}
	if len(t.Preferred) > 0 {
		parts = append(parts, "preferred "+strings.Join(t.Preferred, ", then "))
	}
	return strings.Join(parts, "; ")
}

// TopologyOf reads the Workload's topology annotations. An invalid
// annotation is ignored as if absent (the gang is placed without it);
// problems say what was wrong, for the user.
func TopologyOf(workload metav1.Object) (*Topology, []string) {
	annotations := workload.GetAnnotations()
	t := &Topology{}
	var problems []string
	if value, ok := annotations[TopologyRequiredAnnotation]; ok {
		if errs := validation.IsQualifiedName(value); len(errs) > 0 {
			problems = append(problems, fmt.Sprintf("annotation %s=%q is not a node label key (%s): it is ignored",
				TopologyRequiredAnnotation, value, strings.Join(errs, "; ")))
		} else {
			t.Required = value
		}
	}
	if value, ok := annotations[TopologyPreferredAnnotation]; ok {
		keys, problem := preferredKeys(value)
		if problem != "" {
			problems = append(problems, fmt.Sprintf("annotation %s=%q: %s: it is ignored", TopologyPreferredAnnotation, value, problem))
		} else {
			t.Preferred = keys
		}
	}
	if t.IsZero() {
		return nil, problems
	}
	return t, problems
}

// preferredKeys parses a comma-separated list of label keys.
func preferredKeys(value string) ([]string, string) {
	fields := strings.Split(value, ",")
	if len(fields) > MaxPreferredTopologyKeys {
		return nil, fmt.Sprintf("%d keys, at most %d are allowed", len(fields), MaxPreferredTopologyKeys)
	}
	keys := make([]string, 0, len(fields))
	for _, f := range fields {
		key := strings.TrimSpace(f)
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			return nil, fmt.Sprintf("%q is not a node label key (%s)", key, strings.Join(errs, "; "))
		}
		for _, k := range keys {
			if k == key {
				return nil, fmt.Sprintf("key %q is named twice", key)
			}
		}
		keys = append(keys, key)
	}
	return keys, ""
}

// PodGroupTopology is the constraint of a podGroup of the Workload: the
// group's own schedulingConstraints (group, of a portable Workload, may be
// nil), else the Workload's annotations; nil for none.
func PodGroupTopology(workload metav1.Object, group *wcsv1alpha1.PodGroup) *Topology {
	if group != nil {
		if t := topologyOfGroup(group); t != nil {
			return t
		}
	}
	t, _ := TopologyOf(workload)
	return t
}

// topologyOfGroup is a portable podGroup's own constraints, or nil when it
// has none (the Workload's annotations apply).
func topologyOfGroup(g *wcsv1alpha1.PodGroup) *Topology {
	c := g.SchedulingConstraints
	if c == nil || (len(c.Topology) == 0 && len(c.PreferredTopology) == 0) {
		return nil
	}
	t := &Topology{}
	if len(c.Topology) > 0 {
		t.Required = c.Topology[0].Key
	}
	for _, p := range c.PreferredTopology {
		t.Preferred = append(t.Preferred, p.Key)
	}
	return t
}
