package v1_test

import (
	"strings"
	"testing"

	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"

	internal "github.com/workload-coscheduling/workload-coscheduling/apis/config"
	_ "github.com/workload-coscheduling/workload-coscheduling/apis/config/scheme"
	configv1 "github.com/workload-coscheduling/workload-coscheduling/apis/config/v1"
)

// decodeArgs decodes a KubeSchedulerConfiguration the way kube-scheduler's
// config loader does (strictly, defaulted, converted to internal) and returns
// the WorkloadCoscheduling args of its first profile.
func decodeArgs(t *testing.T, args string) (*internal.WorkloadCoschedulingArgs, error) {
	t.Helper()
	decoded, err := decodeArgsOrError(args)
	if err == nil && decoded == nil {
		t.Fatalf("no WorkloadCoscheduling args decoded from %q", args)
	}
	return decoded, err
}

// decodeArgsOrError is decodeArgs without a test: nil args and no error
// when the document decodes without WorkloadCoscheduling args.
func decodeArgsOrError(args string) (*internal.WorkloadCoschedulingArgs, error) {
	doc := `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: workload-coscheduling
  plugins:
    multiPoint:
      enabled:
      - name: WorkloadCoscheduling
  pluginConfig:
  - name: WorkloadCoscheduling
    args: ` + args + "\n"
	obj, _, err := scheme.Codecs.UniversalDecoder().Decode([]byte(doc), nil, nil)
	if err != nil {
		return nil, err
	}
	cfg, ok := obj.(*config.KubeSchedulerConfiguration)
	if !ok || len(cfg.Profiles) == 0 {
		return nil, nil // input that rewrote the document itself
	}
	for _, pc := range cfg.Profiles[0].PluginConfig {
		if args, ok := pc.Args.(*internal.WorkloadCoschedulingArgs); ok && pc.Name == "WorkloadCoscheduling" {
			return args, nil
		}
	}
	return nil, nil
}

func TestArgsDecoding(t *testing.T) {
	tests := []struct {
		name        string
		args        string
		wantTimeout int64
		wantBackoff int64
		wantErr     string
	}{
		{name: "empty args take the defaults", args: "{}",
			wantTimeout: configv1.DefaultPermitWaitingTimeSeconds, wantBackoff: configv1.DefaultPodGroupBackoffSeconds},
		{name: "set values", args: "{permitWaitingTimeSeconds: 300, podGroupBackoffSeconds: 0}", wantTimeout: 300, wantBackoff: 0},
		{name: "unknown field is refused", args: "{permitWaitingTime: 300}", wantErr: `unknown field "permitWaitingTime"`},
		{name: "wrong type is refused", args: `{permitWaitingTimeSeconds: "soon"}`, wantErr: "permitWaitingTimeSeconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args, err := decodeArgs(t, tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if args.PermitWaitingTimeSeconds != tc.wantTimeout || args.PodGroupBackoffSeconds != tc.wantBackoff {
				t.Fatalf("args = %+v, want permitWaitingTimeSeconds %d, podGroupBackoffSeconds %d", args, tc.wantTimeout, tc.wantBackoff)
			}
		})
	}
}
