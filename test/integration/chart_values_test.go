package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// allValuesRelease and allValuesNamespace are where TestChart applies the
// render of ci/all-values.yaml.
const (
	allValuesRelease   = "gangs"
	allValuesNamespace = "batch"
	allValuesFullname  = "batch-gang-scheduler" // its fullnameOverride
)

// testChartFreeFormValues checks the values a scheduler-plugins user
// expects (plugins, pluginConfig, clientConnection, probes, a PDB, name
// overrides, metrics Service and ServiceMonitor) render as documented, and
// that the free-form ones cannot switch gang scheduling off unnoticed.
func testChartFreeFormValues(t *testing.T) {
	t.Run("free-form plugins cannot undo gang scheduling", func(t *testing.T) {
		refused := map[string]string{
			`plugins={"multiPoint":{"enabled":[{"name":"DefaultPreemption"}]}}`:        "plugins.multiPoint.enabled: DefaultPreemption",
			`plugins={"postFilter":{"enabled":[{"name":"DefaultPreemption"}]}}`:        "plugins.postFilter.enabled: DefaultPreemption",
			`plugins={"permit":{"enabled":[{"name":"GangScheduling"}]}}`:               "plugins.permit.enabled: GangScheduling",
			`plugins={"permit":{"disabled":[{"name":"WorkloadCoscheduling"}]}}`:        "would disable WorkloadCoscheduling at permit",
			`plugins={"preFilter":{"disabled":[{"name":"*"}]}}`:                        "would disable WorkloadCoscheduling at preFilter",
			`pluginConfig=[{"name":"WorkloadCoscheduling","args":{}}]`:                 "WorkloadCoscheduling's args come from the plugin value",
			`plugins={"score":{"enable":[{"name":"NodeResourcesFit"}]}}`:               "additional properties 'enable' not allowed",
			`podDisruptionBudget={"enabled":true,"maxUnavailable":"half"}`:             "/podDisruptionBudget/maxUnavailable",
			`clientConnection={"qps":0}`:                                               "/clientConnection/qps",
			`plugins={"multiPoint":{"disabled":[{"name":"WorkloadCoscheduling"}]}}`:    "would disable WorkloadCoscheduling at multiPoint",
			`plugins={"multiPoint":{"enabled":[{"name":"NodeResourcesFit","x":1}]}}`:   "additional properties 'x' not allowed",
			`plugins={"score":{"disabled":[{"name":"*"}]},"reserve":{"disabled":[]}}`:  "",
			`plugins={"filter":{"disabled":[{"name":"*"}]}}`:                           "",
			`pluginConfig=[{"name":"NodeResourcesFit","args":{"scoringStrategy":{}}}]`: "",
		}
		for setJSON, want := range refused {
			_, err := helm(t, "template", "x", chartDir, "--kube-version", "1.35.4", "--set-json", setJSON)
			switch {
			case want == "" && err != nil:
				t.Errorf("--set-json %s: %v, want it accepted", setJSON, err)
			case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Errorf("--set-json %s: error %v, want one containing %q", setJSON, err, want)
			}
		}
	})

	t.Run("the metrics Service alone; the ServiceMonitor with a token in the current authorization form", func(t *testing.T) {
		objs := decodeObjects(t, helmRender(t, "--set", "metricsService.enabled=true"))
		if svc := find(objs, "Service"); svc == nil || svc.GetName() != "x-workload-coscheduling-metrics" {
			t.Errorf("metricsService.enabled: no metrics Service")
		}
		if find(objs, "ServiceMonitor") != nil || find(objs, "Secret") != nil {
			t.Errorf("metricsService.enabled alone rendered a ServiceMonitor or a token Secret")
		}

		objs = decodeObjects(t, helmTemplate(t, allValuesRelease, allValuesNamespace, filepath.Join(chartDir, "ci", "all-values.yaml")))
		endpoint := serviceMonitorEndpoint(t, find(objs, "ServiceMonitor"))
		if _, deprecated := endpoint["bearerTokenFile"]; deprecated {
			t.Errorf("the ServiceMonitor uses the deprecated bearerTokenFile")
		}
		secret := find(objs, "Secret")
		if secret == nil || secret.Object["type"] != "kubernetes.io/service-account-token" {
			t.Fatalf("no ServiceAccount token Secret for the scraper: %v", secret)
		}
		authType, _, _ := unstructured.NestedString(endpoint, "authorization", "type")
		credentials, _, _ := unstructured.NestedString(endpoint, "authorization", "credentials", "name")
		if authType != "Bearer" || credentials != secret.GetName() {
			t.Errorf("ServiceMonitor authorization %s from Secret %q, want Bearer from %q", authType, credentials, secret.GetName())
		}

		objs = decodeObjects(t, helmRender(t, "--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.tokenSecretName=prometheus-token"))
		credentials, _, _ = unstructured.NestedString(serviceMonitorEndpoint(t, find(objs, "ServiceMonitor")), "authorization", "credentials", "name")
		if credentials != "prometheus-token" || find(objs, "Secret") != nil || find(objs, "Service") == nil {
			t.Errorf("with tokenSecretName: credentials from %q, want prometheus-token and no Secret of the chart's, a metrics Service", credentials)
		}
	})

	t.Run("names, labels, probes and the PDB follow the values", func(t *testing.T) {
		if objs := decodeObjects(t, helmRender(t)); find(objs, "PodDisruptionBudget") != nil {
			t.Errorf("a PodDisruptionBudget by default")
		}
		objs := decodeObjects(t, helmTemplate(t, allValuesRelease, allValuesNamespace, filepath.Join(chartDir, "ci", "all-values.yaml")))
		for _, o := range objs {
			if !strings.HasPrefix(o.GetName(), allValuesFullname) && o.GetKind() != "ServiceAccount" {
				t.Errorf("%s %s: not named after fullnameOverride %s", o.GetKind(), o.GetName(), allValuesFullname)
			}
			if o.GetLabels()["app.kubernetes.io/name"] != "gangs" {
				t.Errorf("%s %s: app.kubernetes.io/name %q, want the nameOverride gangs", o.GetKind(), o.GetName(), o.GetLabels()["app.kubernetes.io/name"])
			}
		}
		pdb := find(objs, "PodDisruptionBudget")
		if min, _, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "minAvailable"); fmt.Sprint(min) != "1" {
			t.Errorf("PodDisruptionBudget minAvailable %v, want 1", min)
		}
		if _, set, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "maxUnavailable"); set {
			t.Errorf("PodDisruptionBudget sets maxUnavailable beside minAvailable")
		}
		containers, _, _ := unstructured.NestedSlice(find(objs, "Deployment").Object, "spec", "template", "spec", "containers")
		container := containers[0].(map[string]interface{})
		if period, _, _ := unstructured.NestedFieldNoCopy(container, "readinessProbe", "periodSeconds"); fmt.Sprint(period) != "5" {
			t.Errorf("readinessProbe.periodSeconds %v, want the value's 5", period)
		}
		if threshold, _, _ := unstructured.NestedFieldNoCopy(container, "startupProbe", "failureThreshold"); fmt.Sprint(threshold) != "30" {
			t.Errorf("startupProbe.failureThreshold %v, want the value's 30", threshold)
		}
	})
}

// testChartAllValuesScheduler runs bin/kube-scheduler as the rendered
// Deployment of ci/all-values.yaml would (its ServiceAccount, flags and
// ConfigMap, applied in allValuesNamespace), and checks the free-form
// pluginConfig reached its profile: MostAllocated packs a gang onto one node
// where the default scoring spreads it.
func testChartAllValuesScheduler(t *testing.T, c *cluster) {
	sa := "system:serviceaccount:" + allValuesNamespace + ":gang-scheduler"

	t.Run("the scraper's token may read /metrics and nothing else", func(t *testing.T) {
		reader := "system:serviceaccount:" + allValuesNamespace + ":" + allValuesFullname + "-metrics-reader"
		for _, tc := range []struct {
			spec  authorizationv1.SubjectAccessReviewSpec
			allow bool
		}{
			{authorizationv1.SubjectAccessReviewSpec{User: reader, NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}}, true},
			{authorizationv1.SubjectAccessReviewSpec{User: reader, ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"}}, false},
		} {
			review, err := c.client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(),
				&authorizationv1.SubjectAccessReview{Spec: tc.spec}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed != tc.allow {
				t.Errorf("%s %+v %+v: allowed=%v, want %v", reader, tc.spec.NonResourceAttributes, tc.spec.ResourceAttributes, review.Status.Allowed, tc.allow)
			}
		}
	})

	t.Run("the scheduler of every value set runs its profile, bin-packing; its standby is told apart in the metrics", func(t *testing.T) {
		// Two replicas, as with replicas: 2; one leads. A standby's
		// informers run too: it watches the gang being placed.
		first, second := c.startAllValuesScheduler(t, sa), c.startAllValuesScheduler(t, sa)
		for _, port := range []int{first, second} {
			waitHTTPSOK(t, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), 60*time.Second)
		}

		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "4")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 3})
		for i := 0; i < 3; i++ {
			c.createPod(t, ns, podSpec{name: fmt.Sprintf("w-%d", i), workload: "job", podGroup: "workers", scheduler: "gang-scheduler"})
		}
		c.waitBound(t, ns, 60*time.Second, "w-0", "w-1", "w-2")
		nodes := map[string]bool{}
		for _, node := range c.boundPods(t, ns) {
			nodes[node] = true
		}
		if len(nodes) != 1 {
			t.Errorf("the gang spread over %d nodes; MostAllocated from pluginConfig packs it onto one", len(nodes))
		}

		// The standby reports the gangs it watches; the dashboard leaves out
		// instances whose leader_election_master_status is 0. The admission
		// histogram is the leader's alone. Scraped as the ServiceMonitor
		// does, with the metrics reader's token.
		token, err := c.client.CoreV1().ServiceAccounts(allValuesNamespace).CreateToken(context.Background(), allValuesFullname+"-metrics-reader",
			&authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// kube-scheduler names its elector kube-scheduler, whatever the Lease.
		lease := `leader_election_master_status{name="kube-scheduler"}`
		admissions := "workload_coscheduling_gang_admission_duration_seconds_count"
		tracked := "workload_coscheduling_gangs_tracked"
		var roles []string
		for attempt := 0; ; attempt++ {
			roles = roles[:0]
			for _, port := range []int{first, second} {
				got := scrapeHTTPS(t, fmt.Sprintf("https://127.0.0.1:%d/metrics", port), token.Status.Token)
				roles = append(roles, fmt.Sprintf("%s=%v %s=%v %s=%v", lease, got[lease], admissions, got[admissions], tracked, got[tracked]))
			}
			leader, standby := fmt.Sprintf("%s=1 %s=1 %s=1", lease, admissions, tracked), fmt.Sprintf("%s=0 %s=0 %s=1", lease, admissions, tracked)
			if (roles[0] == leader && roles[1] == standby) || (roles[0] == standby && roles[1] == leader) {
				break
			}
			if attempt == 50 {
				t.Fatalf("want one replica with %s and the other with %s; got %q", leader, standby, roles)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The standby's queue judges pods too; only the leader tells the user
		// (one event, not one per replica).
		c.createPod(t, ns, podSpec{name: "lost-0", workload: "nope", podGroup: "workers", scheduler: "gang-scheduler"})
		c.waitEvent(t, ns, "lost-0", "WorkloadNotFound", `Workload "nope"`)
		time.Sleep(3 * time.Second)
		events, err := c.client.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: "regarding.name=lost-0,reason=WorkloadNotFound"})
		if err != nil {
			t.Fatal(err)
		}
		if len(events.Items) != 1 {
			t.Errorf("%d WorkloadNotFound events on the pod from two replicas, want the leader's one", len(events.Items))
		}
		dashboard, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "workload-coscheduling.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, expr := range regexp.MustCompile(`"expr": "(.*)"`).FindAllStringSubmatch(string(dashboard), -1) {
			gauge := strings.Contains(expr[1], "gangs_waiting") || strings.Contains(expr[1], "gangs_tracked")
			if gauge && !strings.Contains(expr[1], `unless on (instance) (leader_election_master_status{job=~\"$job\"} == 0)`) {
				t.Errorf("the dashboard sums a gauge of standbys too: %s", expr[1])
			}
		}
	})
}

// startAllValuesScheduler runs bin/kube-scheduler as the Deployment of
// ci/all-values.yaml does: its flags and ConfigMap, as its ServiceAccount,
// and returns its secure port.
func (c *cluster) startAllValuesScheduler(t *testing.T, sa string) int {
	t.Helper()
	cm, err := c.client.CoreV1().ConfigMaps(allValuesNamespace).Get(context.Background(), allValuesFullname, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(cm.Data["scheduler-config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	// Only the kubeconfig is this test's, where a pod has its in-cluster
	// config (also for delegated authentication and authorization of
	// /metrics); qps and burst stay as rendered.
	kubeconfig := c.impersonating(t, sa, "system:serviceaccounts", "system:serviceaccounts:"+allValuesNamespace)
	cfg["clientConnection"].(map[string]interface{})["kubeconfig"] = kubeconfig
	port := freePort(t)
	args := []string{"--config=" + c.writeConfig(t, cfg), fmt.Sprintf("--secure-port=%d", port),
		"--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig}
	deployment, err := c.client.AppsV1().Deployments(allValuesNamespace).Get(context.Background(), allValuesFullname, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, arg := range deployment.Spec.Template.Spec.Containers[0].Args {
		if !strings.HasPrefix(arg, "--config=") && !strings.HasPrefix(arg, "--secure-port=") {
			args = append(args, arg)
		}
	}
	startBinary(t, "kube-scheduler", args...)
	return port
}

// scrapeHTTPS reads a /metrics page with a bearer token, as Prometheus does:
// each sample line's series (name and labels) and value.
func scrapeHTTPS(t *testing.T, url, token string) map[string]float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the scheduler's self-signed serving certificate
	}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, body, err)
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if i := strings.LastIndexByte(line, ' '); i > 0 && !strings.HasPrefix(line, "#") {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				samples[line[:i]] = v
			}
		}
	}
	return samples
}

func helmRender(t *testing.T, args ...string) string {
	t.Helper()
	out, err := helm(t, append([]string{"template", "x", chartDir, "--kube-version", "1.35.4"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return out
}

func serviceMonitorEndpoint(t *testing.T, sm *unstructured.Unstructured) map[string]interface{} {
	t.Helper()
	if sm == nil {
		t.Fatal("no ServiceMonitor rendered")
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints: %v", endpoints)
	}
	return endpoints[0].(map[string]interface{})
}
