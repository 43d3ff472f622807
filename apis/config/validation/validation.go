// Package validation checks the plugin args after defaulting, so that a bad
// value stops the scheduler at start with an error naming the field.
package validation

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/workload-coscheduling/workload-coscheduling/apis/config"
)

// MaxPermitWaitingTimeSeconds is the framework's cap on any Permit wait
// (15 minutes). A longer value would be cut without notice, so it is refused.
const MaxPermitWaitingTimeSeconds = 15 * 60

// MaxPodGroupBackoffSeconds bounds the backoff of a failed gang to an hour.
const MaxPodGroupBackoffSeconds = 60 * 60

// ValidateWorkloadCoschedulingArgs returns every invalid field of args, with
// paths under path (the args' place in the configuration).
func ValidateWorkloadCoschedulingArgs(path *field.Path, args *config.WorkloadCoschedulingArgs) field.ErrorList {
	var errs field.ErrorList
	if t := args.PermitWaitingTimeSeconds; t < 1 || t > MaxPermitWaitingTimeSeconds {
		errs = append(errs, field.Invalid(path.Child("permitWaitingTimeSeconds"), t,
			fmt.Sprintf("must be between 1 and %d (the scheduling framework caps Permit waits at 15 minutes)", MaxPermitWaitingTimeSeconds)))
	}
	if b := args.PodGroupBackoffSeconds; b < 0 || b > MaxPodGroupBackoffSeconds {
		errs = append(errs, field.Invalid(path.Child("podGroupBackoffSeconds"), b,
			fmt.Sprintf("must be between 0 (no backoff) and %d", MaxPodGroupBackoffSeconds)))
	}
	return errs
}
