package learn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// WriteYAML writes the config lines to paste: the offerings, features,
// regions and allow keys with their full new values (the current entries,
// then the additions, each addition commented with the destinations that
// need it). Pasted over the same keys of the config, they admit every
// destination the report could admit. With nothing to add it writes a
// comment only.
func (rep *Report) WriteYAML(w io.Writer) error {
	if rep.Added.Empty() {
		_, err := fmt.Fprintf(w, "# arcfence learn report: nothing to add (%d refused destinations: %s)\n",
			len(rep.Items), rep.actionSummary())
		return err
	}
	doc := &yaml.Node{Kind: yaml.MappingNode}
	doc.HeadComment = fmt.Sprintf("arcfence learn report: %d destinations to admit (%s).\n"+
		"Replace these keys of your config with the values below: the current entries are kept,\n"+
		"the additions are marked.", rep.admitted(), rep.actionSummary())
	for _, k := range []struct {
		key        string
		cur, added []string
	}{
		{"offerings", rep.Current.Offerings, rep.Added.Offerings},
		{"features", rep.Current.Features, rep.Added.Features},
		{"regions", rep.Current.Regions, rep.Added.Regions},
		{"allow", rep.Current.Allow, rep.Added.Allow},
	} {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		if len(k.cur)+len(k.added) == 0 {
			seq.Style = yaml.FlowStyle
		}
		for _, v := range k.cur {
			seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: v})
		}
		for _, v := range k.added {
			n := &yaml.Node{Kind: yaml.ScalarNode, Value: v}
			n.LineComment = printable("added for " + joinShort(rep.Why[k.key+"/"+v], 3) + rep.sectionOf(k.key, v))
			seq.Content = append(seq.Content, n)
		}
		doc.Content = append(doc.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k.key}, seq)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// sectionOf names the spec section behind an added offering, feature or
// region (from the first item that needed it).
func (rep *Report) sectionOf(key, v string) string {
	for _, it := range rep.Items {
		if it.Action != ActionCatalog || it.Section == "" {
			continue
		}
		if key == "offerings" && it.Offering == v || key == "features" && it.Feature == v || key == "regions" && it.Region == v {
			return fmt.Sprintf(" (spec: %s)", it.Section)
		}
	}
	if key == "allow" {
		return " (not in the catalog)"
	}
	return ""
}

func joinShort(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(list[:n], ", "), len(list)-n)
}

// admitted counts the items the suggestion admits.
func (rep *Report) admitted() int {
	n := 0
	for _, it := range rep.Items {
		if it.Action == ActionCatalog || it.Action == ActionAllow {
			n++
		}
	}
	return n
}

func (rep *Report) actionSummary() string {
	counts := map[string]int{}
	for _, it := range rep.Items {
		counts[it.Action]++
	}
	var parts []string
	for _, a := range []string{ActionCatalog, ActionAllow, ActionAllowed, ActionDenyList, ActionGuard, ActionClient, ActionGateway, ActionUnresolved} {
		if counts[a] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[a], a))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// WriteJSON writes the report as one indented JSON document.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the human summary: what was read, each destination with
// what would admit it, and the additions.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	st := rep.Stats
	fmt.Fprintf(&b, "arcfence learn report: %d lines read, %d refusal lines standing for %d refusals of %d destinations",
		st.Lines, st.RefusalLines, st.Refusals, len(rep.Items))
	if st.Other > 0 {
		fmt.Fprintf(&b, ", %d other log lines", st.Other)
	}
	b.WriteString("\n")
	if st.Bad > 0 {
		fmt.Fprintf(&b, "  %d lines could not be parsed and were skipped, e.g.:\n", st.Bad)
		for _, s := range st.BadSamples {
			fmt.Fprintf(&b, "    %s\n", s)
		}
	}
	if st.Bad > 0 && st.RefusalLines == 0 {
		b.WriteString("  no JSON refusal line was found: learn report reads the JSON lines arcfence writes with log.format: json (the default)\n")
	}
	if st.Unitemized > 0 {
		fmt.Fprintf(&b, "  %d refusals were logged without their destination (the log writer fell behind)\n", st.Unitemized)
	}
	fmt.Fprintf(&b, "config: offerings %s, features %s, regions %s\n\n",
		list(rep.Current.Offerings), list(rep.Current.Features), list(rep.Current.Regions))
	if len(rep.Items) == 0 {
		b.WriteString("no refused destinations in these logs\n")
	}
	for _, it := range rep.Items {
		reasons := make([]string, 0, len(it.Reasons))
		for r := range it.Reasons {
			reasons = append(reasons, r)
		}
		slices.Sort(reasons)
		mode := ""
		if it.WouldDeny > 0 {
			mode = fmt.Sprintf(", %d let through by learn mode", it.WouldDeny)
		}
		fmt.Fprintf(&b, "%s  %s (%s; %s%s)\n", destName(it.Group), plural(it.Count, "refusal"),
			strings.Join(reasons, ", "), strings.Join(it.Components, "+"), mode)
		fmt.Fprintf(&b, "    -> %s\n", describe(it))
	}
	if !rep.Added.Empty() {
		b.WriteString("\nadd to the config (arcfence learn report --format yaml prints the lines to paste):\n")
		for _, k := range []struct {
			key string
			v   []string
		}{{"offerings", rep.Added.Offerings}, {"features", rep.Added.Features}, {"regions", rep.Added.Regions}, {"allow", rep.Added.Allow}} {
			if len(k.v) > 0 {
				fmt.Fprintf(&b, "  %s: + %s\n", k.key, strings.Join(k.v, ", "))
			}
		}
	} else {
		b.WriteString("\nnothing to add to the config\n")
	}
	for _, np := range rep.NewProfiles {
		fmt.Fprintf(&b, "new profile %s: clients %s, offerings %s, features %s (for %s)\n",
			np.Name, list(np.Clients), list(np.Offerings), list(np.Features), joinShort(np.For, 3))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func list(v []string) string {
	return "[" + strings.Join(v, ", ") + "]"
}

// describe says in words what admits an item.
func describe(it Item) string {
	switch it.Action {
	case ActionCatalog:
		var adds []string
		if it.Offering != "" {
			adds = append(adds, "offering "+it.Offering)
		}
		if it.Feature != "" {
			adds = append(adds, "feature "+it.Feature)
		}
		if it.Region != "" {
			adds = append(adds, "region "+it.Region)
		}
		s := fmt.Sprintf("add %s: catalog row %s, spec section %q", strings.Join(adds, " and "), it.Rule, it.Section)
		if it.Note != "" {
			s += " (" + it.Note + ")"
		}
		return s
	case ActionAllow:
		s := fmt.Sprintf("not in the catalog: add allow entry %q", it.Allow)
		if it.Note != "" {
			s += " (" + it.Note + ")"
		}
		return s
	case ActionAllowed:
		return fmt.Sprintf("already allowed by %s: nothing to add", it.Rule)
	case ActionProfile:
		return "a profile of its own: " + it.Note
	}
	return it.Action + ": " + it.Note
}

func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// printable drops control characters (a path from a log may hold any), so
// a comment stays one line.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
