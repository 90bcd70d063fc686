//go:build tools

// Package tools pins the CoreDNS main package this module builds.
package tools

import _ "github.com/coredns/coredns"
