package gang

// The annotation names users write, in one place.

// Annotations by which a pod joins a pod group of a portable Workload (the
// CRD of apis/scheduling/v1alpha1), where the API server has no
// spec.workloadRef. Annotations rather than labels: a reference is not
// something to select pods by, and a value the API server would refuse as a
// label (too long, say) leaves the pod pending with an event naming the
// problem instead of failing its creation. spec.workloadRef wins over them.
const (
	WorkloadAnnotation   = "scheduling.workload-coscheduling.io/workload"
	PodGroupAnnotation   = "scheduling.workload-coscheduling.io/pod-group"
	ReplicaKeyAnnotation = "scheduling.workload-coscheduling.io/pod-group-replica-key"
)

// PermitWaitingTimeAnnotation on a Workload, built-in or portable, overrides
// the plugin's permitWaitingTimeSeconds for the gangs of that Workload: how
// long an attempt may wait at Permit for its quorum.
const PermitWaitingTimeAnnotation = "workload-coscheduling.io/permit-waiting-time-seconds"

// Topology annotations on a Workload, built-in or portable: a node label key
// whose one domain must hold each gang of the Workload, and up to three keys,
// narrowest first, whose domains it should go in (workloadref.TopologyOf).
const (
	TopologyRequiredAnnotation  = "workload-coscheduling.io/topology-required"
	TopologyPreferredAnnotation = "workload-coscheduling.io/topology-preferred"
)

// PodGroupLabel is how a pod joins a scheduler-plugins PodGroup
// (scheduling.x-k8s.io/v1alpha1) of its namespace, as KubeRay, the Kubeflow
// training operator and Coscheduling's users label pods. spec.workloadRef and
// the portable annotations win over it.
const PodGroupLabel = "scheduling.x-k8s.io/pod-group"
