package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Connections (config connection): how the Arc agents reach Azure.
const (
	// ConnectionDirect: every row directly (the default).
	ConnectionDirect = "direct"
	// ConnectionGateway: the offerings the Arc gateway fronts reach Azure
	// through it; their direct rows are replaced by the gateway rows.
	ConnectionGateway = "gateway"
	// ConnectionBoth: the direct and the gateway rows (the migration window).
	ConnectionBoth = "both"
)

// gatewaySuffix is the zone of every Arc gateway endpoint.
const gatewaySuffix = ".gw.arc.azure.com"

// NormalizeGatewayEndpoint returns gateway.endpoint as a host name: a DNS
// name of exactly one label before .gw.arc.azure.com, "https://" and a
// trailing "/" stripped, lower-cased. Anything else is an error that says
// the expected form (without the key name).
func NormalizeGatewayEndpoint(s string) (string, error) {
	h := strings.TrimSpace(s)
	if len(h) >= len("https://") && strings.EqualFold(h[:len("https://")], "https://") {
		h = h[len("https://"):]
	}
	h = strings.TrimSuffix(h, "/")
	if h == "" {
		return "", fmt.Errorf("required with connection gateway or both: the endpoint of your gateway resource, <prefix>%s (az arcgateway list)", gatewaySuffix)
	}
	n, ok := NormalizeHost(h)
	if !ok || isIPForm(n) || strings.ContainsAny(n, "*:/") {
		return "", fmt.Errorf("%q is not a host name; expected <prefix>%s", s, gatewaySuffix)
	}
	prefix, found := strings.CutSuffix(n, gatewaySuffix)
	if !found || prefix == "" || strings.Contains(prefix, ".") {
		return "", fmt.Errorf("%q: expected exactly one label before %s, e.g. contoso-gw%s", s, gatewaySuffix, gatewaySuffix)
	}
	return n, nil
}

// compileGateway validates connection and gateway.endpoint (bad reports
// each error) and sets the policy's connection and endpoint.
func (p *Policy) compileGateway(cfg Config, bad func(string, ...any)) {
	p.conn = strings.ToLower(strings.TrimSpace(cfg.Connection))
	switch p.conn {
	case "":
		p.conn = ConnectionDirect
	case ConnectionDirect, ConnectionGateway, ConnectionBoth:
	default:
		bad("connection: unknown connection %q; expected direct, gateway or both", cfg.Connection)
		p.conn = ConnectionDirect
		return
	}
	if id := cfg.GatewayResourceID; id != "" && (!strings.HasPrefix(strings.ToLower(id), "/subscriptions/") || strings.ContainsAny(id, " \t\"'`$\\;&|")) {
		bad("gateway.resource_id: %q: expected the gateway resource's id, /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.HybridCompute/gateways/<name> (az arcgateway list)", id)
	}
	if p.conn == ConnectionDirect {
		if strings.TrimSpace(cfg.GatewayEndpoint) != "" {
			bad("gateway.endpoint: set with connection direct; set connection to gateway or both, or remove gateway.endpoint")
		}
		return
	}
	gw, err := NormalizeGatewayEndpoint(cfg.GatewayEndpoint)
	if err != nil {
		bad("gateway.endpoint: %v", err)
	}
	p.gateway = gw
	if !GatewayCloud(p.cloud) {
		bad("connection: the Arc gateway exists in cloud public only, not in cloud %s; set connection to direct", p.cloud)
	} else if p.cat != nil && !p.cat.hasGateway() {
		bad("connection: catalog.revision %s has no Arc gateway rows (the gateway is in revision %s); set catalog.revision to %s or connection to direct",
			p.revision, Revision202608, Revision202608)
	}
}

// hasGateway reports whether a row of the catalog is a gateway row.
func (c *Catalog) hasGateway() bool {
	for _, e := range c.Entries {
		if slices.ContainsFunc(e.Sources, func(s SpecRow) bool { return s.Gateway }) {
			return true
		}
	}
	return false
}

// guestOffering reports whether o brings the servers rows with the
// guest-management feature.
func guestOffering(o string) bool {
	return o == OfferingVMware || o == OfferingSCVMM || o == OfferingAzureStackHCI
}

// viaGateway reports whether the selected offering o reaches the rows of
// table offering fam (servers or kubernetes) through the Arc gateway when
// connection is not direct: servers, sql-server, esu and the guest
// management of the appliance offerings for servers; kubernetes and
// data-services for kubernetes. The resource bridge itself is not fronted.
func (p *Policy) viaGateway(o, fam string) bool {
	if p.conn == ConnectionDirect {
		return false
	}
	switch fam {
	case OfferingServers:
		return o == OfferingServers || o == OfferingSQLServer || o == OfferingESU ||
			guestOffering(o) && p.features[FeatureGuestManagement]
	case OfferingKubernetes:
		return o == OfferingKubernetes || o == OfferingDataServices
	}
	return false
}

// replaced reports whether connection gateway replaces the direct row s
// that offering o brings by the gateway rows: the servers, sql-server and
// esu rows (but a row Windows Admin Center switches on stays direct) and
// the kubernetes rows of the offerings the gateway fronts.
func (p *Policy) replaced(o string, s *SpecRow) bool {
	if p.conn != ConnectionGateway || s.Gateway {
		return false
	}
	if slices.Contains(s.Features, FeatureWindowsAdminCenter) && (p.features[FeatureWindowsAdminCenter] || len(s.Features) == 1) {
		return false // Windows Admin Center is not fronted
	}
	switch s.Offering {
	case OfferingServers, OfferingSQLServer, OfferingESU:
		return p.viaGateway(o, OfferingServers)
	case OfferingKubernetes:
		return p.viaGateway(o, OfferingKubernetes)
	}
	return false
}

// Connection returns connection with its default filled in: direct,
// gateway or both.
func (p *Policy) Connection() string { return p.conn }

// GatewayEndpoint returns the normalized gateway.endpoint ("" with
// connection direct).
func (p *Policy) GatewayEndpoint() string { return p.gateway }

// StaysDirect returns, with connection gateway, what of the selection the
// Arc gateway does not front, so its rows stay direct: offerings
// ("resource-bridge"), parts of offerings ("data-services (its own rows)",
// "vmware (its resource bridge rows)") and features ("feature
// windows-admin-center"). It is nil with connection direct or both, and
// when the gateway fronts everything selected.
func (p *Policy) StaysDirect() []string {
	if p.conn != ConnectionGateway {
		return nil
	}
	var out []string
	for _, o := range p.Selected() {
		switch {
		case o == OfferingDataServices:
			out = append(out, o+" (its own rows)")
		case o == OfferingResourceBridge:
			out = append(out, o)
		case guestOffering(o) && p.features[FeatureGuestManagement]:
			out = append(out, o+" (its resource bridge rows; the guest management rows go through the gateway)")
		case guestOffering(o):
			out = append(out, o)
		}
	}
	if p.features[FeatureWindowsAdminCenter] && (p.selected[OfferingServers] || p.selected[OfferingSQLServer]) {
		out = append(out, "feature "+FeatureWindowsAdminCenter)
	}
	return out
}

// fronted reports whether, with connection gateway, the gateway replaces a
// direct row of e for a selected offering or for the row's own offering:
// an agent that reaches it directly is not configured for the gateway.
// missing is that row's offering when no selected offering brings it ("").
func (p *Policy) fronted(e *Entry) (ok bool, missing string) {
	if p.conn != ConnectionGateway {
		return false, ""
	}
	for _, sel := range []bool{true, false} {
		for i := range e.Sources {
			s := &e.Sources[i]
			for _, o := range Offerings() {
				if (sel && p.selected[o] || !sel && o == s.Offering) && p.replaced(o, s) && p.includesDirect(o, e, s) {
					if sel {
						return true, ""
					}
					return true, o
				}
			}
		}
	}
	return false, ""
}
