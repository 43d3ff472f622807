package v1alpha1

import (
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
)

// BuiltIn returns the spec in the built-in scheduling.k8s.io/v1alpha1 type,
// whose shape it has, so that code reading pod groups serves both APIs.
func (s *WorkloadSpec) BuiltIn() schedulingv1alpha1.WorkloadSpec {
	var out schedulingv1alpha1.WorkloadSpec
	if ref := s.ControllerRef; ref != nil {
		out.ControllerRef = &schedulingv1alpha1.TypedLocalObjectReference{APIGroup: ref.APIGroup, Kind: ref.Kind, Name: ref.Name}
	}
	for _, g := range s.PodGroups {
		group := schedulingv1alpha1.PodGroup{Name: g.Name}
		if g.Policy.Basic != nil {
			group.Policy.Basic = &schedulingv1alpha1.BasicSchedulingPolicy{}
		}
		if g.Policy.Gang != nil {
			group.Policy.Gang = &schedulingv1alpha1.GangSchedulingPolicy{MinCount: g.Policy.Gang.MinCount}
		}
		out.PodGroups = append(out.PodGroups, group)
	}
	return out
}
