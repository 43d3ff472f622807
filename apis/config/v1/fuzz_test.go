package v1_test

import (
	"testing"

	"github.com/workload-coscheduling/workload-coscheduling/apis/config/validation"
)

// FuzzArgsDecoding feeds arbitrary text as the plugin's args through the
// scheduler's configuration loader, then validation: whatever comes in, it
// is refused with an error or decoded into args that validation judges; it
// never panics, and args that pass validation are in range. `go test` runs
// the seeds; `go test -fuzz FuzzArgsDecoding ./apis/config/v1` explores.
func FuzzArgsDecoding(f *testing.F) {
	for _, seed := range []string{
		"{}",
		"{permitWaitingTimeSeconds: 300, podGroupBackoffSeconds: 0}",
		"{permitWaitingTimeSeconds: 0}",
		"{podGroupBackoffSeconds: -1}",
		"{permitWaitingTimeSeconds: 9223372036854775808}",
		"{permitWaitingTimeSeconds: 1e309}",
		"{permitWaitingTimeSeconds: \"60\"}",
		"{permitWaitingTimeSecond: 60}",
		"[1, 2]",
		"null",
		"{permitWaitingTimeSeconds: {nested: true}}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, args string) {
		decoded, err := decodeArgsOrError(args)
		if err != nil || decoded == nil {
			return
		}
		if errs := validation.ValidateWorkloadCoschedulingArgs(nil, decoded); len(errs) == 0 {
			if p := decoded.PermitWaitingTimeSeconds; p < 1 || p > validation.MaxPermitWaitingTimeSeconds {
				t.Fatalf("validation passed permitWaitingTimeSeconds %d", p)
			}
			if b := decoded.PodGroupBackoffSeconds; b < 0 || b > validation.MaxPodGroupBackoffSeconds {
				t.Fatalf("validation passed podGroupBackoffSeconds %d", b)
			}
		}
	})
}
