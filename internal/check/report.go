package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints one row per checked endpoint (endpoint, port, offering,
// reachable, TLS, certificate names, latency, error), then the rows that
// could not be checked, then a summary line.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tPORT\tOFFERING\tREACHABLE\tTLS\tCERT NAMES\tLATENCY\tERROR")
	var unchecked []string
	ok, failed, failedReq := 0, 0, 0
	for _, r := range results {
		if !r.Checked {
			unchecked = append(unchecked, r.Error)
			continue
		}
		tlsCol := yesNo(r.TLSOK)
		if r.Scheme == "http" {
			tlsCol = "n/a"
			if r.HTTPStatus != 0 {
				tlsCol = fmt.Sprintf("n/a (HTTP %d)", r.HTTPStatus)
			}
		}
		off := r.Offering
		if off == "" {
			off = "-"
		}
		if !r.Required {
			off += " (optional)"
		}
		lat := "-"
		if r.Reachable {
			lat = r.Latency.Round(time.Millisecond).String()
		}
		errCol := r.Error
		if errCol == "" {
			errCol = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Host+r.Path, r.Port, off, yesNo(r.Reachable), tlsCol,
			names(r.CertNames), lat, oneLine(errCol))
		switch {
		case r.OK():
			ok++
		case r.Required:
			failed++
			failedReq++
		default:
			failed++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, u := range unchecked {
		if !seen[u] {
			seen[u] = true
			fmt.Fprintf(w, "%s (give --sample NAME to check one of its names)\n", u)
		}
	}
	_, err := fmt.Fprintf(w, "%d checked: %d ok, %d failed (%d required); %d not checkable\n",
		ok+failed, ok, failed, failedReq, len(seen))
	return err
}

// jsonResult is the JSON line of one endpoint.
type jsonResult struct {
	Endpoint string `json:"endpoint"`
	Result
	LatencyMS float64 `json:"latency_ms"`
	OK        bool    `json:"ok"`
}

// WriteJSON prints one JSON object per line per endpoint, unchecked ones included.
func WriteJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, r := range results {
		if r.CertNames == nil {
			r.CertNames = []string{}
		}
		ep := r.Endpoint()
		if !r.Checked {
			ep = r.Pattern
		}
		jr := jsonResult{Endpoint: ep, Result: r, OK: r.OK(),
			LatencyMS: float64(r.Latency.Microseconds()) / 1000}
		if err := enc.Encode(jr); err != nil {
			return err
		}
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func names(n []string) string {
	switch {
	case len(n) == 0:
		return "-"
	case len(n) > 3:
		return strings.Join(n[:3], ",") + fmt.Sprintf(",+%d", len(n)-3)
	}
	return strings.Join(n, ",")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
