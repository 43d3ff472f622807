package v1

import "k8s.io/utils/ptr"

// DefaultPermitWaitingTimeSeconds is how long gang members wait at Permit
// when the args do not say.
const DefaultPermitWaitingTimeSeconds int64 = 60

// SetDefaults_WorkloadCoschedulingArgs fills the fields the user left out.
func SetDefaults_WorkloadCoschedulingArgs(obj *WorkloadCoschedulingArgs) {
	if obj.PermitWaitingTimeSeconds == nil {
		obj.PermitWaitingTimeSeconds = ptr.To(DefaultPermitWaitingTimeSeconds)
	}
}
