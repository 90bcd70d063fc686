//go:build tools

// Package tools pins the crictl CLI this module builds: kind runs it on the node to
// see which images are already there (`kind load` skips those).
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
