package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// chartDir is the Helm chart; allOptions switches on every optional part.
const (
	chartDir   = "helm/arcfence"
	allOptions = "helm/arcfence/ci/all-options-values.yaml"
)

// helmBin finds helm: $ARCFENCE_HELM, then PATH, then the CI cache
// (.ci/lib.sh's HELM_DIR). The tests that need it skip without one;
// .ci/e2e-50-monitoring.sh runs them with helm installed.
func helmBin(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("ARCFENCE_HELM"); h != "" {
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	if h := filepath.Join(cache, "arcfence-ci", "bin", "helm"); fileExists(h) {
		return h
	}
	t.Skip("helm is not installed (.ci/e2e-50-monitoring.sh installs it and runs this test)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// render runs `helm template arcfence` on the chart with args and decodes
// the objects by kind.
func render(t *testing.T, args ...string) map[string][]doc {
	t.Helper()
	cmd := exec.Command(helmBin(t), append([]string{"template", "arcfence", chartDir, "--namespace", "arcfence"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	byKind := map[string][]doc{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var d doc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("helm template %v output: %v", args, err)
		}
		if d == nil {
			continue
		}
		if ns := d.str("metadata", "namespace"); ns != "arcfence" {
			t.Errorf("%s %s in namespace %q, want the release's", d.str("kind"), d.str("metadata", "name"), ns)
		}
		byKind[d.str("kind")] = append(byKind[d.str("kind")], d)
	}
	return byKind
}

// named returns the object of kind whose name is name.
func named(t *testing.T, byKind map[string][]doc, kind, name string) doc {
	t.Helper()
	for _, d := range byKind[kind] {
		if d.str("metadata", "name") == name {
			return d
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

func parseYAML(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return normalize(v)
}

// normalize turns yaml.v3's doc-typed nested maps into plain maps so that
// reflect.DeepEqual compares content only.
func normalize(v any) any {
	switch x := v.(type) {
	case doc:
		return normalize(map[string]any(x))
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalize(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = normalize(e)
		}
		return s
	}
	return v
}

// TestHelmFilesLinkMonitoring: the chart's rules and dashboard are links to
// deploy/monitoring, not copies.
func TestHelmFilesLinkMonitoring(t *testing.T) {
	for _, f := range []string{"arcfence-rules.yaml", "grafana-dashboard.json"} {
		link := filepath.Join(chartDir, "files", f)
		target, err := os.Readlink(link)
		if err != nil {
			t.Errorf("%s is not a link: %v", link, err)
			continue
		}
		if want := filepath.Join("..", "..", "..", "monitoring", f); target != want {
			t.Errorf("%s -> %s, want %s", link, target, want)
		}
		if _, err := os.Stat(link); err != nil {
			t.Errorf("%s: %v", link, err)
		}
	}
}

// TestHelmMatchesKustomize: the chart's default render and the kustomize
// manifests agree on every security- and availability-relevant field, so
// neither copy can drift: securityContexts, service account token, probes,
// ports, resources, grace period, replicas, PDB, the config, and (when on)
// the NetworkPolicy.
func TestHelmMatchesKustomize(t *testing.T) {
	kz, _ := loadManifests(t)
	hm := render(t)
	kDep, hDep := one(t, kz, "Deployment"), named(t, hm, "Deployment", "arcfence")

	podLabels := hDep.m("spec", "template", "metadata", "labels")
	if !matches(hDep.m("spec", "selector", "matchLabels"), podLabels) {
		t.Error("chart Deployment selector does not match its pod labels")
	}
	for _, path := range [][]any{
		{"spec", "replicas"},
		{"spec", "strategy"},
		{"spec", "template", "spec", "securityContext"},
		{"spec", "template", "spec", "automountServiceAccountToken"},
		{"spec", "template", "spec", "enableServiceLinks"},
		{"spec", "template", "spec", "terminationGracePeriodSeconds"},
		{"spec", "template", "spec", "volumes"},
		{"spec", "template", "metadata", "annotations"},
		{"spec", "template", "spec", "containers", 0, "securityContext"},
		{"spec", "template", "spec", "containers", 0, "readinessProbe"},
		{"spec", "template", "spec", "containers", 0, "livenessProbe"},
		{"spec", "template", "spec", "containers", 0, "ports"},
		{"spec", "template", "spec", "containers", 0, "resources"},
		{"spec", "template", "spec", "containers", 0, "args"},
		{"spec", "template", "spec", "containers", 0, "volumeMounts"},
		{"spec", "template", "spec", "containers", 0, "image"},
	} {
		k, h := normalize(kDep.get(path...)), normalize(hDep.get(path...))
		if k == nil || !reflect.DeepEqual(k, h) {
			t.Errorf("Deployment %v: kustomize %v, chart %v", path, k, h)
		}
	}
	if hDep.get("spec", "template", "spec", "affinity", "podAntiAffinity") == nil {
		t.Error("chart Deployment has no pod anti-affinity")
	}

	kCM, hCM := one(t, kz, "ConfigMap"), named(t, hm, "ConfigMap", "arcfence-config")
	if k, h := parseYAML(t, kCM.str("data", "arcfence.yaml")), parseYAML(t, hCM.str("data", "arcfence.yaml")); !reflect.DeepEqual(k, h) {
		t.Errorf("config differs:\nkustomize %v\nchart     %v", k, h)
	}

	kPDB, hPDB := one(t, kz, "PodDisruptionBudget"), named(t, hm, "PodDisruptionBudget", "arcfence")
	if kPDB.get("spec", "minAvailable") != hPDB.get("spec", "minAvailable") ||
		!matches(hPDB.m("spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("PodDisruptionBudget: kustomize %v, chart %v", kPDB.get("spec"), hPDB.get("spec"))
	}

	kSvc, hSvc := one(t, kz, "Service"), named(t, hm, "Service", "arcfence")
	if k, h := normalize(kSvc.get("spec", "ports")), normalize(hSvc.get("spec", "ports")); !reflect.DeepEqual(k, h) ||
		kSvc.get("spec", "type") != hSvc.get("spec", "type") || !matches(hSvc.m("spec", "selector"), podLabels) {
		t.Errorf("Service: kustomize %v, chart %v", kSvc.get("spec"), hSvc.get("spec"))
	}
	for _, kind := range []string{"NetworkPolicy", "ServiceMonitor", "PrometheusRule"} {
		if len(hm[kind]) != 0 {
			t.Errorf("default values render a %s; the optional objects are off by default", kind)
		}
	}

	hNP := named(t, render(t, "--set", "networkPolicy.enabled=true"), "NetworkPolicy", "arcfence")
	kNP := one(t, kz, "NetworkPolicy")
	if !matches(hNP.m("spec", "podSelector", "matchLabels"), podLabels) {
		t.Error("chart NetworkPolicy does not select the pods")
	}
	for _, key := range []string{"policyTypes", "ingress", "egress"} {
		if k, h := normalize(kNP.get("spec", key)), normalize(hNP.get("spec", key)); !reflect.DeepEqual(k, h) {
			t.Errorf("NetworkPolicy %s:\nkustomize %v\nchart     %v", key, k, h)
		}
	}
}

// TestHelmAllOptions: with every option on, the chart renders the DNS
// filter's ports, a ServiceMonitor that finds the admin port, the rules file
// as a PrometheusRule and the dashboard as a sidecar ConfigMap.
func TestHelmAllOptions(t *testing.T) {
	hm := render(t, "-f", allOptions)
	dep := named(t, hm, "Deployment", "arcfence")
	c := dep.m("spec", "template", "spec", "containers", 0)
	ports := map[string]string{}
	for i := range c.get("ports").([]any) {
		ports[c.str("ports", i, "name")] = c.str("ports", i, "protocol")
		if n := c.str("ports", i, "name"); strings.HasPrefix(n, "dns-") && c.get("ports", i, "containerPort") != 5353 {
			t.Errorf("container port %s = %v, want 5353", n, c.get("ports", i, "containerPort"))
		}
	}
	if ports["dns-udp"] != "UDP" || ports["dns-tcp"] != "TCP" {
		t.Errorf("container ports %v: want dns-udp/UDP and dns-tcp/TCP", ports)
	}
	conf := parseYAML(t, named(t, hm, "ConfigMap", "arcfence-config").str("data", "arcfence.yaml")).(map[string]any)
	if dns, _ := conf["dns"].(map[string]any); dns["listen"] != "0.0.0.0:5353" || !reflect.DeepEqual(dns["upstream"], []any{"10.20.0.53:53"}) {
		t.Errorf("config dns = %v, want listen 0.0.0.0:5353 and the upstream of dns.upstream", conf["dns"])
	}
	svc := named(t, hm, "Service", "arcfence")
	svcPorts := map[string]any{}
	for i := range svc.get("spec", "ports").([]any) {
		svcPorts[svc.str("spec", "ports", i, "targetPort")] = svc.get("spec", "ports", i, "port")
	}
	if svcPorts["dns-udp"] != 53 || svcPorts["dns-tcp"] != 53 || svcPorts["admin"] != nil {
		t.Errorf("Service ports %v: want DNS on 53 and no admin port", svcPorts)
	}
	if dep.get("spec", "template", "spec", "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution") == nil {
		t.Error("podAntiAffinity: hard did not render a required anti-affinity")
	}

	sm := named(t, hm, "ServiceMonitor", "arcfence")
	metricsSvc := named(t, hm, "Service", "arcfence-metrics")
	if !matches(sm.m("spec", "selector", "matchLabels"), metricsSvc.m("metadata", "labels")) ||
		matches(sm.m("spec", "selector", "matchLabels"), svc.m("metadata", "labels")) {
		t.Error("ServiceMonitor must select the -metrics Service only")
	}
	if sm.str("spec", "endpoints", 0, "port") != metricsSvc.str("spec", "ports", 0, "name") || metricsSvc.str("spec", "ports", 0, "targetPort") != "admin" {
		t.Errorf("ServiceMonitor endpoint %v does not reach the admin port via %v", sm.get("spec", "endpoints"), metricsSvc.get("spec", "ports"))
	}
	if job := metricsSvc.str("metadata", "labels", sm.str("spec", "jobLabel")); job != "arcfence" {
		t.Errorf("scrape job would be %q; the rules select job=\"arcfence\"", job)
	}
	if sm.str("metadata", "labels", "release") != "kube-prometheus-stack" {
		t.Error("serviceMonitor.labels not applied")
	}

	rules, err := os.ReadFile(filepath.Join("monitoring", "arcfence-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pr := named(t, hm, "PrometheusRule", "arcfence")
	if got, want := normalize(pr.get("spec")), parseYAML(t, string(rules)); !reflect.DeepEqual(got, want) {
		t.Errorf("PrometheusRule spec is not the rules file:\n%v\nwant\n%v", got, want)
	}

	dash, err := os.ReadFile(filepath.Join("monitoring", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	cm := named(t, hm, "ConfigMap", "arcfence-dashboard")
	var got, want any
	if err := json.Unmarshal([]byte(cm.str("data", "arcfence.json")), &got); err != nil {
		t.Fatalf("dashboard ConfigMap: %v", err)
	}
	if err := json.Unmarshal(dash, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) || cm.str("metadata", "labels", "grafana_dashboard") != "1" {
		t.Error("dashboard ConfigMap is not the dashboard file with the sidecar label")
	}
	np := named(t, hm, "NetworkPolicy", "arcfence")
	egress := np.get("spec", "egress").([]any)
	if last := doc(normalize(egress[len(egress)-1]).(map[string]any)); len(egress) != 3 || last.str("to", 0, "ipBlock", "cidr") != "10.20.0.53/32" {
		t.Errorf("NetworkPolicy egress %v: want the two standard rules and networkPolicy.extraEgress", egress)
	}
	var dnsIngress []string
	for i := range np.get("spec", "ingress", 0, "ports").([]any) {
		if np.get("spec", "ingress", 0, "ports", i, "port") == 5353 {
			dnsIngress = append(dnsIngress, np.str("spec", "ingress", 0, "ports", i, "protocol"))
		}
	}
	if !reflect.DeepEqual(dnsIngress, []string{"UDP", "TCP"}) {
		t.Errorf("NetworkPolicy lets clients reach the DNS filter over %v, want UDP and TCP", dnsIngress)
	}
}

// TestHelmConfigValidates runs `arcfence config validate` on the config the
// chart renders, with the default values and with every option on.
func TestHelmConfigValidates(t *testing.T) {
	bin := os.Getenv("ARCFENCE_BIN")
	if bin == "" {
		bin = buildStatic(t)
	}
	for name, args := range map[string][]string{"defaults": nil, "all options": {"-f", allOptions}} {
		t.Run(name, func(t *testing.T) {
			validateConfig(t, bin, named(t, render(t, args...), "ConfigMap", "arcfence-config").str("data", "arcfence.yaml"))
		})
	}
}
