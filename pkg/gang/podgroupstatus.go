package gang

import (
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
)

// PodGroupStatus is the status a scheduler-plugins PodGroup should show for
// its pods (those labelled with its name, of any phase), in the fields and
// phases of Coscheduling's controller:
//
//   - Finished: minMember pods succeeded.
//   - Failed: a pod failed, and minMember pods ran (running, succeeded or
//     failed): the gang started and lost a member for good.
//   - Running: minMember pods run or succeeded.
//   - Scheduling: minMember pods exist; the gang is being placed (or a
//     running one replaces a member).
//   - Pending: fewer than minMember pods exist.
//
// Finished and Failed are final, as in Coscheduling: pods cleaned up after
// the job ended do not move the group back to Pending. Unknown (part of a
// gang placed, the rest unplaceable) is never the case:
// no gang is left partly placed. scheduleStartTime is set when the group
// first leaves Pending and kept; occupiedBy names the owners of the first
// pod that has any, as Coscheduling's controller does (namespace/name, sorted,
// comma-separated), and is kept once set.
func PodGroupStatus(pg *spv1alpha1.PodGroup, pods []*v1.Pod, now metav1.Time) spv1alpha1.PodGroupStatus {
	if pg.Status.Phase == spv1alpha1.PodGroupFinished || pg.Status.Phase == spv1alpha1.PodGroupFailed {
		return pg.Status
	}
	status := spv1alpha1.PodGroupStatus{
		OccupiedBy:        pg.Status.OccupiedBy,
		ScheduleStartTime: pg.Status.ScheduleStartTime,
	}
	present := 0
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		present++
		switch pod.Status.Phase {
		case v1.PodRunning:
			status.Running++
		case v1.PodSucceeded:
			status.Succeeded++
		case v1.PodFailed:
			status.Failed++
		}
		if status.OccupiedBy == "" && len(pod.OwnerReferences) > 0 {
			status.OccupiedBy = occupiedBy(pod)
		}
	}
	minMember := max(pg.Spec.MinMember, 1)
	switch {
	case status.Succeeded >= minMember:
		status.Phase = spv1alpha1.PodGroupFinished
	case status.Failed > 0 && status.Running+status.Succeeded+status.Failed >= minMember:
		status.Phase = spv1alpha1.PodGroupFailed
	case status.Running+status.Succeeded >= minMember:
		status.Phase = spv1alpha1.PodGroupRunning
	case present >= int(minMember):
		status.Phase = spv1alpha1.PodGroupScheduling
	default:
		status.Phase = spv1alpha1.PodGroupPending
	}
	if status.Phase != spv1alpha1.PodGroupPending && status.ScheduleStartTime.IsZero() {
		status.ScheduleStartTime = now
	}
	return status
}

func occupiedBy(pod *v1.Pod) string {
	refs := make([]string, 0, len(pod.OwnerReferences))
	for _, owner := range pod.OwnerReferences {
		refs = append(refs, pod.Namespace+"/"+owner.Name)
	}
	slices.Sort(refs)
	return strings.Join(refs, ",")
}
