package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// TestSchedulerRunsWithTheChartsFlags checks, on the local cluster, that the
// scheduler process running the suite has exactly the command line of the
// chart's Deployment: the shipped flags (no GenericWorkload gate of the
// test's own: the API server has it, the scheduler as shipped does not) are
// what every other test here exercises. Only the config file's path and the
// secure port differ, as they would in a pod.
func TestSchedulerRunsWithTheChartsFlags(t *testing.T) {
	if *environment != "local" {
		t.Skip("on kind the chart's Deployment runs the scheduler itself")
	}
	out, err := exec.Command(filepath.Join(repoRoot, "bin", "helm"), "template", "workload-coscheduling",
		filepath.Join(repoRoot, "charts", "workload-coscheduling"), "--namespace", "kube-system",
		"--kube-version", "1.35.4", "--show-only", "templates/deployment.yaml").Output()
	if err != nil {
		t.Fatal(err)
	}
	var deployment appsv1.Deployment
	if err := yaml.Unmarshal(out, &deployment); err != nil {
		t.Fatal(err)
	}
	want := withoutPathAndPort(deployment.Spec.Template.Spec.Containers[0].Args)

	binary := filepath.Join(repoRoot, "bin", "kube-scheduler")
	var running [][]string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, file := range procs {
		raw, err := os.ReadFile(file)
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		if argv[0] == binary {
			running = append(running, argv[1:])
		}
	}
	if len(procs) == 0 {
		t.Skip("no /proc here to read the scheduler's command line from")
	}
	if len(running) != 1 {
		t.Fatalf("%d processes of %s run, want the local cluster's one: %q", len(running), binary, running)
	}
	if got := withoutPathAndPort(running[0]); !slices.Equal(got, want) {
		t.Errorf("the scheduler runs with %q, the chart's Deployment with %q", got, want)
	}
	for _, arg := range running[0] {
		if strings.HasPrefix(arg, "--feature-gates=") {
			t.Errorf("the scheduler runs with %s, which the chart does not set by default", arg)
		}
	}
}

// withoutPathAndPort leaves out the values of --config and --secure-port,
// which a pod and the local cluster set each their own way.
func withoutPathAndPort(args []string) []string {
	out := make([]string, 0, len(args))
	for _, arg := range args {
		for _, flag := range []string{"--config=", "--secure-port="} {
			if strings.HasPrefix(arg, flag) {
				arg = flag
			}
		}
		out = append(out, arg)
	}
	return out
}
