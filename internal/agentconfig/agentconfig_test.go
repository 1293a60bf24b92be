package agentconfig

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string // lines that must be there, beyond the golden comparison
		not  []string
	}{
		{name: "servers", opts: Options{ProxyURL: "http://arcfence.corp.example:3128", Offerings: []string{"servers"}, Regions: []string{"eastus2"}},
			want: []string{`azcmagent config set proxy.url "http://arcfence.corp.example:3128"`, "DefaultEnvironment=", "azcmagent check --location eastus2"},
			not:  []string{"proxy.bypass", "connectedk8s"}},
		{name: "servers-private-link", opts: Options{ProxyURL: "arcfence.corp.example:3128", Offerings: []string{"servers", "sql-server"},
			Features: []string{"private-link"}, Regions: []string{"westeurope"}},
			want: []string{`azcmagent config set proxy.bypass "Arc"`}},
		{name: "servers-rm-private-link", opts: Options{ProxyURL: "http://10.0.0.5:3128", Offerings: []string{"esu"},
			Features: []string{"private-link", "resource-management-private-link"}, Regions: []string{"eastus2"}},
			want: []string{`azcmagent config set proxy.bypass "ARM,Arc"`}},
		{name: "kubernetes", opts: Options{ProxyURL: "http://arcfence.arc-system.svc:3128", Offerings: []string{"kubernetes"},
			Features: []string{"cluster-connect"}, Regions: []string{"eastus2"}, ServiceCIDR: "10.96.0.0/12"},
			want: []string{`--proxy-https "http://arcfence.arc-system.svc:3128"`, `--proxy-http "http://arcfence.arc-system.svc:3128"`,
				`--proxy-skip-range "10.96.0.0/12,kubernetes.default.svc,.svc.cluster.local,.svc"`, "--proxy-cert is not needed"},
			not: []string{"azcmagent", "<service-CIDR>"}},
		{name: "kubernetes-no-cidr", opts: Options{ProxyURL: "http://proxy:3128", Offerings: []string{"kubernetes", "data-services"}},
			want: []string{`--proxy-skip-range "<service-CIDR>,kubernetes.default.svc,.svc.cluster.local,.svc"`, "--location <region>"}},
		{name: "data-indirect", opts: Options{ProxyURL: "http://proxy:3128", Offerings: []string{"data-services"}, DataServicesMode: "indirect"},
			want: []string{"az arcdata dc upload"}, not: []string{"connectedk8s"}},
		{name: "vmware-guest", opts: Options{ProxyURL: "http://proxy:3128", Offerings: []string{"kubernetes", "resource-bridge", "vmware"},
			Features: []string{"guest-management"}, Regions: []string{"eastus2"}},
			want: []string{"az arcappliance configuration proxy update vmware", "azcmagent config set proxy.url", "az connectedk8s connect"}},
		{name: "servers-usgov", opts: Options{ProxyURL: "http://proxy:3128", Offerings: []string{"servers"}, Regions: []string{"usgovvirginia"}, Cloud: "usgov"},
			want: []string{"az cloud set --name AzureUSGovernment", "azcmagent connect --cloud AzureUSGovernment", "--location usgovvirginia",
				`azcmagent config set proxy.url "http://proxy:3128"`}},
		{name: "kubernetes-china", opts: Options{ProxyURL: "http://proxy:3128", Offerings: []string{"kubernetes"}, Regions: []string{"chinanorth3"}, Cloud: "china"},
			want: []string{"az cloud set --name AzureChinaCloud", "az connectedk8s connect"}, not: []string{"azcmagent"}},
		{name: "servers-gateway", opts: Options{ProxyURL: "http://proxy:3128", Offerings: []string{"servers"}, Regions: []string{"eastus2"},
			Connection: "gateway", GatewayEndpoint: "contoso.gw.arc.azure.com",
			GatewayResourceID: "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.HybridCompute/gateways/contoso"},
			want: []string{"azcmagent config set connection.type gateway", "az arcgateway settings update",
				`--gateway-resource-id "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.HybridCompute/gateways/contoso"`,
				`--gateway-id "/subscriptions/0000/`, "endpoint contoso.gw.arc.azure.com", `azcmagent config set proxy.url "http://proxy:3128"`},
			not: []string{"<gateway-resource-id>", "connectedk8s", "migration window"}},
		{name: "kubernetes-gateway-both", opts: Options{ProxyURL: "http://proxy:3128", Offerings: []string{"kubernetes"}, Regions: []string{"eastus2"},
			Connection: "both", GatewayEndpoint: "contoso.gw.arc.azure.com"},
			want: []string{`az connectedk8s update --name <cluster-name> --resource-group <resource-group> \` + "\n" + `  --gateway-resource-id "<gateway-resource-id>"`,
				"--disable-gateway", "migration window", "az arcgateway list"},
			not: []string{"azcmagent", "arcgateway settings"}},
		{name: "hci-bridge-only", opts: Options{ProxyURL: "https://arcfence.corp.example:3129", Offerings: []string{"resource-bridge", "azure-stack-hci"}},
			want: []string{"az arcappliance configuration proxy update hci"}, not: []string{"azcmagent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, tt.opts); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("output has %q", n)
				}
			}
			path := filepath.Join("testdata", tt.name+".txt")
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./internal/agentconfig -update creates it)", err)
			}
			if out != string(want) {
				t.Errorf("differs from %s (-update rewrites it)\n--- got\n%s", path, out)
			}
		})
	}
}

func TestProxyURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://a.example:3128":   "http://a.example:3128",
		"a.example:3128":          "http://a.example:3128",
		"https://a.example:3129/": "https://a.example:3129",
		"http://[fd00::1]:3128":   "http://[fd00::1]:3128",
		"":                        "error",
		"socks5://a:1080":         "error",
		"http://a.example":        "error",
		"http://u:p@a:3128":       "error",
		"http://a:3128/x":         "error",
	} {
		got, err := NormalizeProxyURL(in)
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("NormalizeProxyURL(%q) = %q (%v); want %q", in, got, err, want)
		}
	}
	if err := Write(new(bytes.Buffer), Options{ProxyURL: "http://a:1", ServiceCIDR: "10.0.0.0/16; rm -rf /"}); err == nil {
		t.Error("a service CIDR with shell characters was accepted")
	}
}
