package validation

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/workload-coscheduling/workload-coscheduling/apis/config"
)

func TestValidateWorkloadCoschedulingArgs(t *testing.T) {
	path := field.NewPath("args")
	tests := []struct {
		name      string
		permit    int64
		backoff   int64
		wantField string
	}{
		{name: "defaults", permit: 60, backoff: 10},
		{name: "lowest", permit: 1, backoff: 0},
		{name: "highest", permit: 900, backoff: 3600},
		{name: "zero timeout", permit: 0, wantField: "args.permitWaitingTimeSeconds"},
		{name: "negative timeout", permit: -5, wantField: "args.permitWaitingTimeSeconds"},
		{name: "timeout above the framework cap", permit: 901, wantField: "args.permitWaitingTimeSeconds"},
		{name: "negative backoff", permit: 60, backoff: -1, wantField: "args.podGroupBackoffSeconds"},
		{name: "backoff above an hour", permit: 60, backoff: 3601, wantField: "args.podGroupBackoffSeconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := ValidateWorkloadCoschedulingArgs(path, &config.WorkloadCoschedulingArgs{PermitWaitingTimeSeconds: tc.permit, PodGroupBackoffSeconds: tc.backoff})
			if tc.wantField == "" {
				if len(errs) != 0 {
					t.Fatalf("want no error, got %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.wantField || errs[0].Type != field.ErrorTypeInvalid {
				t.Fatalf("want one Invalid error on %s, got %v", tc.wantField, errs)
			}
		})
	}
}
