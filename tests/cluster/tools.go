//go:build tools

// Package tools pins the upstream commands that scripts/cluster builds, so that
// `go build k8s.io/kubernetes/cmd/kube-apiserver` (and the others) resolve from
// this module's go.mod and go.sum. The build tag keeps it out of normal builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
