//go:build tools

// Package tools pins the Gitea command that scripts/forge builds, so that `go build gitea.dev`
// resolves from this module's go.mod and go.sum. The build tag keeps it out of normal builds.
package tools

import (
	_ "gitea.dev"
)
