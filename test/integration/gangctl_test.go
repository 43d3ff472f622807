package integration

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/workload-coscheduling/workload-coscheduling/internal/gangctl"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of kubectl gang")

// gangctlCases run `kubectl gang` against the API server and compare its
// output with testdata/kubectl-gang/*.golden (go test -run TestWorkloadCoscheduling/kubectl -update
// rewrites them).
var gangctlCases = []clusterCase{
	{"kubectl gang lists and describes the gangs of a namespace", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "4")
		// Members created before their Workload: once it exists, both are
		// judged with the same count, so the output does not depend on timing.
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
		c.createPod(t, ns, podSpec{name: "w-1", workload: "job", podGroup: "workers"})
		c.createPod(t, ns, podSpec{name: "lost-0", workload: "lost", podGroup: "workers"})
		c.waitEvent(t, ns, "lost-0", "WorkloadNotFound", `Workload "lost"`)
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 3}, podGroup{name: "web"})
		c.waitEvent(t, ns, "job", "WaitingForGangMembers", "2/3 present")
		c.createPod(t, ns, podSpec{name: "web-0", workload: "job", podGroup: "web"})
		c.createPod(t, ns, podSpec{name: "tb-0", workload: "job", podGroup: "web", replicaKey: "tb"})
		c.waitBound(t, ns, 30*time.Second, "web-0", "tb-0")

		for _, run := range []struct {
			golden string
			args   []string
		}{
			{"list.golden", []string{"list"}},
			{"list-wide.golden", []string{"list", "-o", "wide"}},
			{"list.json.golden", []string{"list", "-o", "json"}},
			{"list.yaml.golden", []string{"list", "-o", "yaml"}},
			{"describe.golden", []string{"describe", "job"}},
			{"describe-missing.golden", []string{"describe", "lost"}},
		} {
			out := c.kubectlGang(t, ns, run.args...)
			if strings.HasPrefix(run.golden, "describe") {
				// Events come in an order the test does not control: the
				// golden file stops at them, and they are checked apart.
				head, events, _ := strings.Cut(out, "Events:\n")
				if !strings.Contains(events, "WaitingForGangMembers") && !strings.Contains(events, "WorkloadNotFound") {
					t.Errorf("kubectl gang %s: no waiting event in %q", strings.Join(run.args, " "), events)
				}
				out = head
			}
			compareGolden(t, run.golden, out)
		}

		// Other tests' namespaces are listed too: only ours is checked.
		all := strings.ReplaceAll(c.kubectlGang(t, "", "list", "-A"), ns, "NS")
		if !strings.HasPrefix(all, "NAMESPACE ") || !regexp.MustCompile(`(?m)^NS +job +workers `).MatchString(all) {
			t.Errorf("kubectl gang list -A lacks the namespace's gangs:\n%s", all)
		}
	}},
}

// kubectlGang runs the command with the cluster's kubeconfig in namespace ns
// (empty: no --namespace) and returns its output, with ns written NS.
func (c *cluster) kubectlGang(t *testing.T, ns string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := gangctl.NewCommand(&out, &errOut)
	full := []string{"--kubeconfig", c.kubeconfig}
	if ns != "" {
		full = append(full, "--namespace", ns)
	}
	cmd.SetArgs(append(full, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("kubectl gang %s: %v: %s", strings.Join(args, " "), err, errOut.String())
	}
	if ns == "" {
		return out.String()
	}
	return strings.ReplaceAll(out.String(), ns, "NS")
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "kubectl-gang", name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("kubectl gang output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
