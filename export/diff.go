package export

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/arcfence/arcfence/policy"
)

// WriteDiff renders a catalog revision diff (policy.Catalog.Diff) in format
// "table" (one aligned line per row, grouped by offering and feature) or
// "json" (an object with from, to and the rows). Another format is an
// error naming the two.
func WriteDiff(w io.Writer, format, from, to string, rows []policy.DiffRow) error {
	bw := bufio.NewWriter(w)
	switch format {
	case FormatTable, "":
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "# catalog revision %s -> %s: %d rows differ\n", from, to, len(rows))
		fmt.Fprintln(tw, "CHANGE\tOFFERING\tFEATURE\tCLOUD\tPATTERN\tPORTS\tWHEN\tDETAIL")
		for _, r := range rows {
			side := r.To
			if side == nil {
				side = r.From
			}
			detail := strings.Join(r.Changes, "; ")
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Change, r.Offering, dash(r.Feature), r.Cloud,
				r.Pattern, joinPorts(side.Ports, ","), dash(side.When), dash(detail))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	case FormatJSON:
		if rows == nil {
			rows = []policy.DiffRow{}
		}
		enc := json.NewEncoder(bw)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(struct {
			From string           `json:"from"`
			To   string           `json:"to"`
			Rows []policy.DiffRow `json:"rows"`
		}{from, to, rows}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--format: unknown format %q for catalog diff; expected %s or %s", format, FormatTable, FormatJSON)
	}
	return bw.Flush()
}
