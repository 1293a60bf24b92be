// Package deploy holds arcfence's deployment recipes — a hardened systemd
// unit (systemd/), a container recipe (Containerfile) and Kubernetes
// manifests (kubernetes/) — and the test that keeps them valid. It has no
// Go code of its own.
package deploy
