package v1

import "k8s.io/utils/ptr"

// DefaultPermitWaitingTimeSeconds is how long gang members wait at Permit
// when the args do not say.
const DefaultPermitWaitingTimeSeconds int64 = 60

// DefaultPodGroupBackoffSeconds is how long a gang is held back after a
// failed attempt when the args do not say.
const DefaultPodGroupBackoffSeconds int64 = 10

// SetDefaults_WorkloadCoschedulingArgs fills the fields the user left out.
func SetDefaults_WorkloadCoschedulingArgs(obj *WorkloadCoschedulingArgs) {
	if obj.PermitWaitingTimeSeconds == nil {
		obj.PermitWaitingTimeSeconds = ptr.To(DefaultPermitWaitingTimeSeconds)
	}
	if obj.PodGroupBackoffSeconds == nil {
		obj.PodGroupBackoffSeconds = ptr.To(DefaultPodGroupBackoffSeconds)
	}
}
