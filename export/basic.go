package export

import (
	"bufio"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/arcfence/arcfence/policy"
)

// writeTable writes one aligned row per rule: pattern (path included), ports,
// scheme, offering, feature, when, private link and section, then the
// catalog revisions and clouds that list the row when the rules carry them.
func writeTable(w *bufio.Writer, rules []policy.Rule, _ Options) error {
	revs := slices.ContainsFunc(rules, func(r policy.Rule) bool { return len(r.Revisions) > 0 })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "PATTERN\tPORTS\tSCHEME\tOFFERING\tFEATURE\tWHEN\tPRIVATE-LINK\tSECTION"
	if revs {
		head += "\tREVISIONS\tCLOUDS"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rules {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s",
			r.Pattern+r.Path, joinPorts(r.Ports, ","), dash(r.Scheme), dash(r.Offering),
			dash(r.Feature), dash(r.When), dash(r.PrivateLink), dash(sectionOf(r)))
		if revs {
			fmt.Fprintf(tw, "\t%s\t%s", dash(strings.Join(r.Revisions, ",")), dash(strings.Join(r.Clouds, ",")))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sectionOf is the rule's spec section, or its kind for user entries.
func sectionOf(r policy.Rule) string {
	if r.Section != "" || r.Source == policy.SourceCatalog {
		return r.Section
	}
	return "config: " + r.Source.String()
}

func joinPorts(ports []int, sep string) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, sep)
}

// jsonRule is the JSON form of a rule: every field of the design's catalog
// entry, plus the source and the rule names decisions use.
type jsonRule struct {
	Pattern     string   `json:"pattern"`
	Ports       []int    `json:"ports"`
	Scheme      string   `json:"scheme"`
	Path        string   `json:"path"`
	Offering    string   `json:"offering"`
	Offerings   []string `json:"offerings"`
	Feature     string   `json:"feature"`
	When        string   `json:"when"`
	PrivateLink string   `json:"private_link"`
	Section     string   `json:"section"`
	Description string   `json:"description"`
	Note        string   `json:"note,omitempty"`
	// Revisions and Clouds are the catalog revisions and clouds that list
	// the row (catalog rows only).
	Revisions []string `json:"revisions,omitempty"`
	Clouds    []string `json:"clouds,omitempty"`
	Source    string   `json:"source"`
	Wildcard  bool     `json:"wildcard"`
	// Rules are the names Decision.Rule gives on each port.
	Rules []string `json:"rules"`
}

// writeJSON writes a JSON array with one object per rule.
func writeJSON(w *bufio.Writer, rules []policy.Rule, _ Options) error {
	out := make([]jsonRule, 0, len(rules))
	for _, r := range rules {
		jr := jsonRule{
			Pattern: r.Pattern, Ports: r.Ports, Scheme: r.Scheme, Path: r.Path,
			Offering: r.Offering, Offerings: offerings(r), Feature: r.Feature, When: r.When,
			PrivateLink: r.PrivateLink, Section: r.Section, Description: r.Description,
			Note: r.Note, Revisions: r.Revisions, Clouds: r.Clouds, Source: r.Source.String(), Wildcard: r.Wildcard(), Rules: []string{},
		}
		if jr.Ports == nil {
			jr.Ports = []int{}
		}
		for _, p := range r.Ports {
			jr.Rules = append(jr.Rules, r.Name(p))
		}
		out = append(out, jr)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// writeHosts writes each distinct host pattern once, one per line, in rule order.
func writeHosts(w *bufio.Writer, rules []policy.Rule, _ Options) error {
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.Pattern] {
			continue
		}
		seen[r.Pattern] = true
		fmt.Fprintln(w, r.Pattern)
	}
	return nil
}
