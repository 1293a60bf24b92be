// Package deploy holds arcfence's deployment recipes — a hardened systemd
// unit (systemd/), a container recipe (Containerfile), Kubernetes manifests
// (kubernetes/), a Helm chart (helm/arcfence) and the monitoring kit
// (monitoring/: alert rules, their promtool tests, a Grafana dashboard) — and
// the tests that keep them valid and the chart and the manifests in step. It
// has no Go code of its own.
package deploy
