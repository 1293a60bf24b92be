package deploy

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

// doc is one Kubernetes object, decoded generically.
type doc map[string]any

// get walks a path of map keys and slice indexes.
func (d doc) get(path ...any) any {
	var cur any = map[string]any(d)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			switch m := cur.(type) {
			case map[string]any:
				cur = m[k]
			case doc: // yaml.v3 decodes nested maps into the outer map's type
				cur = m[k]
			default:
				return nil
			}
		case int:
			s, ok := cur.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			cur = s[k]
		}
	}
	return cur
}

func (d doc) str(path ...any) string { s, _ := d.get(path...).(string); return s }

func (d doc) m(path ...any) doc {
	switch m := d.get(path...).(type) {
	case map[string]any:
		return m
	case doc:
		return m
	}
	return nil
}

func loadManifests(t *testing.T) (map[string][]doc, []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	byKind := map[string][]doc{}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var d doc
			err := dec.Decode(&d)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if d == nil {
				continue
			}
			kind := d.str("kind")
			if d.str("apiVersion") == "" || kind == "" {
				t.Fatalf("%s document %d: apiVersion or kind missing", f, i)
			}
			if kind != "Kustomization" {
				if d.str("metadata", "name") == "" {
					t.Fatalf("%s: %s without metadata.name", f, kind)
				}
				if ns := d.str("metadata", "namespace"); kind != "Namespace" && ns != "arcfence" {
					t.Fatalf("%s: %s in namespace %q; want arcfence", f, kind, ns)
				}
			}
			byKind[kind] = append(byKind[kind], d)
		}
	}
	return byKind, names
}

func one(t *testing.T, byKind map[string][]doc, kind string) doc {
	t.Helper()
	if len(byKind[kind]) != 1 {
		t.Fatalf("%d %s objects; want 1", len(byKind[kind]), kind)
	}
	return byKind[kind][0]
}

// matches reports whether selector's matchLabels all appear in labels.
func matches(selector, labels doc) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestManifests(t *testing.T) {
	byKind, files := loadManifests(t)
	dep := one(t, byKind, "Deployment")
	svc := one(t, byKind, "Service")
	pdb := one(t, byKind, "PodDisruptionBudget")
	np := one(t, byKind, "NetworkPolicy")
	cm := one(t, byKind, "ConfigMap")
	kz := one(t, byKind, "Kustomization")

	replicas, _ := dep.get("spec", "replicas").(int)
	if replicas < 2 {
		t.Errorf("Deployment replicas = %d; want 2 or more", replicas)
	}
	podLabels := dep.m("spec", "template", "metadata", "labels")
	if !matches(dep.m("spec", "selector", "matchLabels"), podLabels) {
		t.Error("Deployment selector does not match its pod labels")
	}
	c := dep.m("spec", "template", "spec", "containers", 0)
	ports := map[string]int{}
	for _, p := range c.get("ports").([]any) {
		pm := doc(nil)
		switch v := p.(type) {
		case map[string]any:
			pm = v
		case doc:
			pm = v
		}
		ports[pm.str("name")] = pm.get("containerPort").(int)
	}
	if ports["proxy"] != 3128 || ports["admin"] != 9090 {
		t.Errorf("container ports = %v", ports)
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if c.str(probe, "httpGet", "path") != path || c.str(probe, "httpGet", "port") != "admin" {
			t.Errorf("%s = %v; want GET %s on the admin port", probe, c.get(probe), path)
		}
	}
	if c.get("resources", "requests", "cpu") == nil || c.get("resources", "requests", "memory") == nil {
		t.Error("no cpu/memory requests")
	}
	if c.get("securityContext", "allowPrivilegeEscalation") != false || c.get("securityContext", "readOnlyRootFilesystem") != true ||
		!slices.Contains(c.get("securityContext", "capabilities", "drop").([]any), any("ALL")) {
		t.Errorf("container securityContext = %v", c.get("securityContext"))
	}
	if dep.get("spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("pod does not require a non-root user")
	}
	grace, _ := dep.get("spec", "template", "spec", "terminationGracePeriodSeconds").(int)
	if grace <= 30 {
		t.Errorf("terminationGracePeriodSeconds = %d; want more than shutdown_grace (30s)", grace)
	}
	if vol := dep.m("spec", "template", "spec", "volumes", 0); vol.str("configMap", "name") != cm.str("metadata", "name") {
		t.Errorf("config volume %v does not mount ConfigMap %s", vol, cm.str("metadata", "name"))
	}
	if c.str("volumeMounts", 0, "mountPath") != "/etc/arcfence" || !slices.Contains(c.get("args").([]any), any("/etc/arcfence/arcfence.yaml")) {
		t.Error("the config is not mounted where --config points")
	}

	if !matches(svc.m("spec", "selector"), podLabels) {
		t.Error("Service selector does not match the pods")
	}
	if svc.str("spec", "ports", 0, "targetPort") != "proxy" || svc.get("spec", "ports", 0, "port") != 3128 {
		t.Errorf("Service port = %v", svc.get("spec", "ports"))
	}
	if !matches(pdb.m("spec", "selector", "matchLabels"), podLabels) {
		t.Error("PodDisruptionBudget selector does not match the pods")
	}
	if min, _ := pdb.get("spec", "minAvailable").(int); min < 1 || min >= replicas {
		t.Errorf("PDB minAvailable = %d with %d replicas", min, replicas)
	}

	if !matches(np.m("spec", "podSelector", "matchLabels"), podLabels) {
		t.Error("NetworkPolicy does not select the pods")
	}
	in := np.m("spec", "ingress", 0)
	vals := in.get("from", 0, "namespaceSelector", "matchExpressions", 0, "values").([]any)
	if !slices.Contains(vals, any("azure-arc")) || in.get("ports", 0, "port") != 3128 {
		t.Errorf("NetworkPolicy ingress to the proxy = %v; want the Arc namespaces on 3128", in)
	}
	if !slices.Contains(np.get("spec", "policyTypes").([]any), any("Ingress")) {
		t.Error("NetworkPolicy does not restrict ingress")
	}

	res := kz.get("resources").([]any)
	for _, f := range files {
		if f != "kustomization.yaml" && !slices.Contains(res, any(f)) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}

	var conf doc
	if err := yaml.Unmarshal([]byte(cm.str("data", "arcfence.yaml")), &conf); err != nil {
		t.Fatalf("ConfigMap arcfence.yaml: %v", err)
	}
	if !strings.HasSuffix(conf.str("listen"), ":3128") || !strings.HasSuffix(conf.str("admin", "listen"), ":9090") {
		t.Errorf("config listen %q / admin.listen %q do not match the container ports", conf.str("listen"), conf.str("admin", "listen"))
	}
}

var build struct {
	once sync.Once
	bin  string
	out  []byte
	err  error
}

// buildStatic builds ./cmd/arcfence with CGO_ENABLED=0, as scripts/release.sh
// does for the archives the Containerfile unpacks.
func buildStatic(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "arcfence-deploy-test")
		if err != nil {
			build.err = err
			return
		}
		build.bin = filepath.Join(dir, "arcfence")
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", build.bin, "./cmd/arcfence")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.out, build.err = cmd.CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/arcfence: %v\n%s", build.err, build.out)
	}
	return build.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.bin != "" {
		os.RemoveAll(filepath.Dir(build.bin))
	}
	os.Exit(code)
}

// TestStaticBuild: the binary the Containerfile copies builds with
// CGO_ENABLED=0 and is static (no interpreter, no shared libraries), so it
// runs on a distroless static base.
func TestStaticBuild(t *testing.T) {
	bin := buildStatic(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary has a dynamic loader (PT_INTERP)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the binary needs shared libraries %v", libs)
	}
}

// TestConfigMapValidates runs `arcfence config validate` on the ConfigMap's config.
func TestConfigMapValidates(t *testing.T) {
	byKind, _ := loadManifests(t)
	validateConfig(t, buildStatic(t), one(t, byKind, "ConfigMap").str("data", "arcfence.yaml"))
}

// validateConfig runs bin's `config validate` on the config text.
func validateConfig(t *testing.T, bin, text string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "arcfence.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "config", "validate", "--config", path).CombinedOutput()
	if err != nil {
		t.Fatalf("config validate: %v\n%s", err, out)
	}
}

// TestContainerfile checks the recipe's shape: multi-stage, the binary taken
// from the release archive of the target architecture, OCI version and
// source labels, a distroless static base, a non-root numeric user, the
// copied binary as entrypoint.
func TestContainerfile(t *testing.T) {
	data, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user, entry string
	var copied []string
	fromRelease := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entry = line
		case "COPY":
			if len(froms) > 1 && strings.HasPrefix(f[1], "--from=") {
				copied = append(copied, f[len(f)-1])
			}
		case "ADD":
			fromRelease = fromRelease || strings.Contains(line, "arcfence_${VERSION}_linux_${TARGETARCH}.tar.gz")
		}
	}
	if len(froms) < 2 {
		t.Fatalf("stages %v; want a build stage and a runtime stage", froms)
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "distroless/static") {
		t.Errorf("runtime base %q; want a distroless static image", last)
	}
	if !fromRelease {
		t.Error("the recipe does not unpack the release archive arcfence_${VERSION}_linux_${TARGETARCH}.tar.gz")
	}
	for _, label := range []string{`org.opencontainers.image.version="${VERSION}"`, `org.opencontainers.image.source=`} {
		if !bytes.Contains(data, []byte(label)) {
			t.Errorf("the image has no label %s", label)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %q; want a non-root numeric user", user)
	}
	if len(copied) != 1 || !strings.Contains(entry, fmt.Sprintf("%q", copied[0])) {
		t.Errorf("ENTRYPOINT %q does not run the copied binary %v", entry, copied)
	}
}

// TestSystemdUnit checks the unit's hardening and lifecycle settings.
func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("systemd", "arcfence.service"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{} // "Section.Key" -> values
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("bad unit line %q", line)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	want := map[string]string{
		"Service.DynamicUser":           "yes",
		"Service.NoNewPrivileges":       "yes",
		"Service.Restart":               "on-failure",
		"Service.ExecReload":            "/bin/kill -HUP $MAINPID",
		"Service.ProtectSystem":         "strict",
		"Service.CapabilityBoundingSet": "",
		"Service.AmbientCapabilities":   "",
		"Install.WantedBy":              "multi-user.target",
	}
	for k, v := range want {
		if got := keys[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q; want %q", k, got, v)
		}
	}
	if exec := keys["Service.ExecStart"]; len(exec) != 1 || !strings.Contains(exec[0], "arcfence serve --config /etc/arcfence/") {
		t.Errorf("ExecStart = %q", exec)
	}
	if !bytes.Contains(data, []byte("#   AmbientCapabilities=CAP_NET_BIND_SERVICE")) {
		t.Error("the unit does not say how to grant CAP_NET_BIND_SERVICE when a low port is needed")
	}
}

// TestSystemdAnalyze runs `systemd-analyze verify` and the offline security
// assessment on the unit (ExecStart pointed at a freshly built binary), when
// systemd-analyze is installed.
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	bin := buildStatic(t)
	data, err := os.ReadFile(filepath.Join("systemd", "arcfence.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "arcfence.service")
	data = bytes.ReplaceAll(data, []byte("ExecStart=/usr/local/bin/arcfence "), []byte("ExecStart="+bin+" "))
	if err := os.WriteFile(unit, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", unit).CombinedOutput(); err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure on systemd's 0-10 scale, times ten: fail above 3.0 ("OK" is below 4.0).
	out, err := exec.Command(sa, "security", "--offline=true", "--threshold=30", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure above 3.0: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Log(lines[len(lines)-1])
}
