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
		wantField string
	}{
		{name: "default", permit: 60},
		{name: "lowest", permit: 1},
		{name: "framework cap", permit: 900},
		{name: "zero", permit: 0, wantField: "args.permitWaitingTimeSeconds"},
		{name: "negative", permit: -5, wantField: "args.permitWaitingTimeSeconds"},
		{name: "above the framework cap", permit: 901, wantField: "args.permitWaitingTimeSeconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := ValidateWorkloadCoschedulingArgs(path, &config.WorkloadCoschedulingArgs{PermitWaitingTimeSeconds: tc.permit})
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
