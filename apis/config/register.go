package config

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
)

// SchemeGroupVersion is the internal version of the kube-scheduler
// configuration group, which our args join.
var SchemeGroupVersion = schema.GroupVersion{Group: schedconfig.GroupName, Version: runtime.APIVersionInternal}

var (
	// Our types are added to the in-tree builder, so that every scheme the
	// scheduler builds from it (including the one it converts plugin args
	// with) knows them.
	localSchemeBuilder = &schedconfig.SchemeBuilder
	// AddToScheme registers the internal args types to a scheme.
	AddToScheme = localSchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, &WorkloadCoschedulingArgs{})
	return nil
}

func init() {
	localSchemeBuilder.Register(addKnownTypes)
}
