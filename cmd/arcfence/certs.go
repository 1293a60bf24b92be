package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/certs"
)

func newCertsCmd() *cobra.Command {
	c := &cobra.Command{Use: "certs", Short: "TLS material for arcfence's own listeners"}
	var (
		hosts []string
		days  int
		force bool
	)
	initCmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Write a self-signed CA and a server certificate for the TLS listeners",
		Long: `Write into DIR a self-signed CA (ca.pem, ca-key.pem) and a server certificate
signed by it (server.pem with the CA appended, server-key.pem), for
tls.cert / tls.key (the HTTPS proxy listener). Clients trust ca.pem.
Existing files are kept unless --force is given.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			paths, err := certs.Init(dir, certs.InitOptions{
				Hosts:    hosts,
				Validity: time.Duration(days) * 24 * time.Hour,
				Force:    force,
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, p := range paths {
				fmt.Fprintln(out, "wrote", p)
			}
			fmt.Fprintf(out, "\nconfig:\n  tls: {listen: \"127.0.0.1:3129\", cert: %q, key: %q}\n",
				filepath.Join(dir, certs.ServerCertFile), filepath.Join(dir, certs.ServerKeyFile))
			fmt.Fprintf(out, "clients trust %s, e.g. curl --proxy https://127.0.0.1:3129 --proxy-cacert %s ...\n",
				filepath.Join(dir, certs.CACertFile), filepath.Join(dir, certs.CACertFile))
			return nil
		},
	}
	f := initCmd.Flags()
	f.StringSliceVar(&hosts, "host", nil, "name or IP address for the server certificate, repeatable (default: localhost, 127.0.0.1, ::1 and the host name)")
	f.IntVar(&days, "days", 397, "server certificate validity in days")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	c.AddCommand(initCmd)
	return c
}
