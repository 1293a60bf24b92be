package export

import (
	"bufio"
	"encoding/json"
	"fmt"
	"slices"
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
	return writeAzureFirewallScopes(w, []afwScope{{rules: rules, opts: opts}}, opts.Priority)
}

// afwScope is one allowlist of a rule collection group: the whole group's
// (any source), or one profile's, bound to its clients.
type afwScope struct {
	name    string   // profile name; "" = the single allowlist
	clients []string // sourceAddresses; nil = "*"
	rules   []policy.Rule
	opts    Options
}

// afwSet is one scope's rules, by collection.
type afwSet struct{ denyApp, denyNet, app, netw []afwRule }

// writeAzureFirewallScopes writes the rule collection group of one or more
// scopes: their deny rules in the deny collections, their allow rules in
// the allow collections, each rule bound to its scope's sources.
func writeAzureFirewallScopes(w *bufio.Writer, scopes []afwScope, prio int) error {
	if prio == 0 {
		prio = 300
	}
	if prio < 100 || prio > 64980 {
		return fmt.Errorf("azure firewall priority %d: expected 100..64980 (the collections take priority..priority+20)", prio)
	}
	var all afwSet
	for _, sc := range scopes {
		set, err := afwRules(sc.rules, sc.opts)
		if err != nil {
			return err
		}
		for _, list := range []*[]afwRule{&set.denyApp, &set.denyNet, &set.app, &set.netw} {
			for i := range *list {
				r := &(*list)[i]
				if sc.name != "" {
					r.Name = "arcfence-" + sc.name + strings.TrimPrefix(r.Name, "arcfence")
					r.Description = "Profile " + sc.name + ": " + r.Description
				}
				if sc.clients != nil {
					r.SourceAddresses = sc.clients
				}
			}
		}
		all.denyApp = append(all.denyApp, set.denyApp...)
		all.denyNet = append(all.denyNet, set.denyNet...)
		all.app = append(all.app, set.app...)
		all.netw = append(all.netw, set.netw...)
	}
	group := afwGroup{Properties: afwGroupProps{Priority: prio, RuleCollections: []afwCollection{}}}
	for _, c := range []struct {
		name   string
		offset int
		action string
		rules  []afwRule
	}{{"arcfence-deny", 0, "Deny", all.denyApp}, {"arcfence-deny-addresses", 5, "Deny", all.denyNet},
		{"arcfence-arc-endpoints", 10, "Allow", all.app}, {"arcfence-addresses", 20, "Allow", all.netw}} {
		if len(c.rules) > 0 {
			group.Properties.RuleCollections = append(group.Properties.RuleCollections, afwCollection{
				RuleCollectionType: "FirewallPolicyFilterRuleCollection", Name: c.name,
				Priority: prio + c.offset, Action: afwAction{Type: c.action}, Rules: c.rules})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(group)
}

// afwRules turns one allowlist and its deny entries into rules, each with
// its description.
func afwRules(rules []policy.Rule, opts Options) (afwSet, error) {
	var set afwSet
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
	denies, err := parseDenies(opts.Deny, opts.Regions)
	if err != nil {
		return set, err
	}
	var skipped []string
	var allowPorts []int
	for _, r := range rules {
		for _, port := range r.Ports {
			if !slices.Contains(allowPorts, port) {
				allowPorts = append(allowPorts, port)
			}
		}
	}
	slices.Sort(allowPorts)
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
	set.denyApp, set.denyNet = afwDenies(denies, allowPorts)
	for _, r := range app {
		r.Description = describe("Azure Arc endpoints from arcfence", r.notes)
		set.app = append(set.app, *r)
	}
	for _, r := range netw {
		r.Description = "Address entries of the arcfence config (application rules take names only)."
		set.netw = append(set.netw, *r)
	}
	return set, nil
}

func describe(base string, notes []string) string {
	if len(notes) == 0 {
		return base + "."
	}
	return base + ". Note: " + strings.Join(notes, " ")
}

// afwDenies turns deny entries into Deny application rules (names, per
// protocol and port: the entry's port, or every port of the allowlist when
// it names none — other ports are not allowed anyway) and Deny network rules
// (addresses). Rules come before the allow collection by priority.
func afwDenies(denies []denyEntry, allowPorts []int) (app, netw []afwRule) {
	var appR, netR []*afwRule
	find := func(list *[]*afwRule, name string, mk func() *afwRule) *afwRule {
		for _, r := range *list {
			if r.Name == name {
				return r
			}
		}
		r := mk()
		*list = append(*list, r)
		return r
	}
	for _, d := range denies {
		ports := allowPorts
		if d.port != 0 {
			if !slices.Contains(allowPorts, d.port) {
				continue // not allowed in the first place
			}
			ports = []int{d.port}
		}
		for _, port := range ports {
			if d.pat.kind == kindAddress {
				name := "arcfence-deny-addresses-" + strconv.Itoa(port)
				r := find(&netR, name, func() *afwRule {
					return &afwRule{RuleType: "NetworkRule", Name: name, SourceAddresses: []string{"*"},
						IPProtocols: []string{"TCP"}, DestinationPorts: []string{strconv.Itoa(port)}}
				})
				r.DestinationAddresses = uniq(r.DestinationAddresses, d.pat.host)
				continue
			}
			proto := "Https"
			if port == 80 {
				proto = "Http"
			}
			name := "arcfence-deny-" + strings.ToLower(proto) + "-" + strconv.Itoa(port)
			r := find(&appR, name, func() *afwRule {
				return &afwRule{RuleType: "ApplicationRule", Name: name, SourceAddresses: []string{"*"},
					Protocols: []afwProtocol{{ProtocolType: proto, Port: port}}}
			})
			switch d.pat.kind {
			case kindExact:
				r.TargetFqdns = uniq(r.TargetFqdns, d.pat.host)
			case kindSubdomains:
				r.TargetFqdns = uniq(r.TargetFqdns, "*."+d.pat.host)
			default:
				r.notes = uniq(r.notes, fmt.Sprintf("deny %s is not expressible (a wildcard must be the whole first label) and is left out.", d.written))
			}
		}
	}
	for _, r := range appR {
		r.Description = describe("Deny entries of the arcfence config (deny wins)", r.notes)
		if len(r.TargetFqdns) > 0 {
			app = append(app, *r)
		}
	}
	for _, r := range netR {
		r.Description = "Deny address entries of the arcfence config (deny wins)."
		netw = append(netw, *r)
	}
	return app, netw
}
