package export

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/arcfence/arcfence/policy"
)

// Azure Firewall Policy rule collection group body (the ARM resource
// Microsoft.Network/firewallPolicies/ruleCollectionGroups), restricted to the
// fields arcfence fills. It can be PUT as is (`az rest --method put --body @file`)
// or pasted into a template's ruleCollections.
type afwGroup struct {
	Properties afwGroupProps `json:"properties"`
}

type afwGroupProps struct {
	Priority        int             `json:"priority"`
	RuleCollections []afwCollection `json:"ruleCollections"`
}

type afwCollection struct {
	RuleCollectionType string    `json:"ruleCollectionType"`
	Name               string    `json:"name"`
	Priority           int       `json:"priority"`
	Action             afwAction `json:"action"`
	Rules              []afwRule `json:"rules"`
}

type afwAction struct {
	Type string `json:"type"`
}

type afwProtocol struct {
	ProtocolType string `json:"protocolType"`
	Port         int    `json:"port"`
}

type afwRule struct {
	RuleType    string        `json:"ruleType"`
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	Protocols   []afwProtocol `json:"protocols,omitempty"`
	// Application rules.
	SourceAddresses []string `json:"sourceAddresses"`
	TargetFqdns     []string `json:"targetFqdns,omitempty"`
	// Network rules (address entries).
	IPProtocols          []string `json:"ipProtocols,omitempty"`
	DestinationAddresses []string `json:"destinationAddresses,omitempty"`
	DestinationPorts     []string `json:"destinationPorts,omitempty"`

	notes []string
}

// writeAzureFirewall writes the rules as an Azure Firewall Policy rule
// collection group: one application rule per protocol and port (target FQDNs
// grouped), and a network rule collection for address entries. What Azure
// Firewall cannot express is said in the rules' descriptions.
func writeAzureFirewall(w *bufio.Writer, rules []policy.Rule, opts Options) error {
	prio := opts.Priority
	if prio == 0 {
		prio = 300
	}
	if prio < 100 || prio > 65000 {
		return fmt.Errorf("azure firewall priority %d: expected 100..65000", prio)
	}
	var app, netw []*afwRule
	appRule := func(proto string, port int) *afwRule {
		name := "arcfence-" + strings.ToLower(proto) + "-" + strconv.Itoa(port)
		for _, r := range app {
			if r.Name == name {
				return r
			}
		}
		r := &afwRule{RuleType: "ApplicationRule", Name: name, SourceAddresses: []string{"*"},
			Protocols: []afwProtocol{{ProtocolType: proto, Port: port}}}
		app = append(app, r)
		return r
	}
	netRule := func(port int) *afwRule {
		name := "arcfence-addresses-" + strconv.Itoa(port)
		for _, r := range netw {
			if r.Name == name {
				return r
			}
		}
		r := &afwRule{RuleType: "NetworkRule", Name: name, SourceAddresses: []string{"*"},
			IPProtocols: []string{"TCP"}, DestinationPorts: []string{strconv.Itoa(port)}}
		netw = append(netw, r)
		return r
	}
	var skipped []string
	for _, r := range rules {
		p := parsePattern(r.Pattern)
		if p.kind == kindPlaceholder {
			skipped = uniq(skipped, r.Pattern)
			continue
		}
		for _, port := range r.Ports {
			if p.kind == kindAddress {
				nr := netRule(port)
				nr.DestinationAddresses = uniq(nr.DestinationAddresses, p.host)
				continue
			}
			proto := "Https"
			if plainHTTP(r, port) {
				proto = "Http"
			}
			ar := appRule(proto, port)
			switch p.kind {
			case kindExact:
				ar.TargetFqdns = uniq(ar.TargetFqdns, p.host)
			case kindSubdomains:
				ar.TargetFqdns = uniq(ar.TargetFqdns, "*."+p.host)
			case kindFirstGlob:
				wide := "*." + p.host
				ar.TargetFqdns = uniq(ar.TargetFqdns, wide)
				ar.notes = uniq(ar.notes, fmt.Sprintf("%s is emitted as %s (wider): Azure Firewall allows a wildcard only as the whole first label.", r.Pattern, wide))
			}
			if r.Path != "" && proto == "Http" {
				ar.notes = uniq(ar.notes, fmt.Sprintf("%s%s: the path is not enforced (application rules match FQDNs; Premium targetUrls could).", p.host, r.Path))
			}
		}
	}
	if len(skipped) > 0 && len(app) > 0 {
		app[0].notes = append(app[0].notes, "Not emitted, placeholder not filled in the config: "+strings.Join(skipped, ", ")+".")
	}
	group := afwGroup{Properties: afwGroupProps{Priority: prio, RuleCollections: []afwCollection{}}}
	if len(app) > 0 {
		c := afwCollection{RuleCollectionType: "FirewallPolicyFilterRuleCollection", Name: "arcfence-arc-endpoints",
			Priority: prio, Action: afwAction{Type: "Allow"}}
		for _, r := range app {
			r.Description = describe("Azure Arc endpoints from arcfence", r.notes)
			c.Rules = append(c.Rules, *r)
		}
		group.Properties.RuleCollections = append(group.Properties.RuleCollections, c)
	}
	if len(netw) > 0 {
		c := afwCollection{RuleCollectionType: "FirewallPolicyFilterRuleCollection", Name: "arcfence-addresses",
			Priority: prio + 10, Action: afwAction{Type: "Allow"}}
		for _, r := range netw {
			r.Description = "Address entries of the arcfence config (application rules take names only)."
			c.Rules = append(c.Rules, *r)
		}
		group.Properties.RuleCollections = append(group.Properties.RuleCollections, c)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(group)
}

func describe(base string, notes []string) string {
	if len(notes) == 0 {
		return base + "."
	}
	return base + ". Note: " + strings.Join(notes, " ")
}
