// Command runc-capshim is an OCI runtime wrapper for hosts whose capability
// bounding set lacks CAP_SYS_RESOURCE.
//
// Docker grants privileged containers every capability it knows, and runc
// fails with "unable to apply caps: operation not permitted" when one of them
// is outside the bounding set of the host. The shim removes the missing
// capabilities from the bundle's config.json (runc create/run) or from the
// process spec (runc exec --process FILE), then execs the real runc with the
// same arguments. Docker registers it as its default runtime only on such
// hosts; everywhere else it is not installed.
//
// The real runc is run by absolute path: the one given at build time
// (-ldflags "-X main.runcPath=/usr/sbin/runc", which the harness sets to the
// runc it found), else the first of runcLocations. Never PATH: the shim runs
// with whatever environment the container manager passes on, and a runc
// earlier on that PATH (or the shim itself, if installed as runc) must not
// receive root's container specs.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// runcPath is the real runc's absolute path, set at build time with -X.
var runcPath string

// runcLocations are where distributions and Docker's packages install runc.
var runcLocations = []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"}

// dropped lists the capabilities removed from every spec.
var dropped = map[string]bool{"CAP_SYS_RESOURCE": true}

// globalFlagsWithValue are runc's global flags that take a separate value.
var globalFlagsWithValue = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true,
}

func main() {
	args := os.Args[1:]
	if err := rewrite(args); err != nil {
		fmt.Fprintf(os.Stderr, "runc-capshim: %v\n", err)
		os.Exit(1)
	}
	self, _ := os.Executable()
	runc, err := realRunc(runcPath, runcLocations, self)
	if err != nil {
		fmt.Fprintf(os.Stderr, "runc-capshim: %v\n", err)
		os.Exit(1)
	}
	err = syscall.Exec(runc, append([]string{"runc"}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "runc-capshim: exec %s: %v\n", runc, err)
	os.Exit(1)
}

// realRunc returns built if set (it must be absolute), else the first
// executable file among locations that is not self.
func realRunc(built string, locations []string, self string) (string, error) {
	if built != "" {
		if !filepath.IsAbs(built) {
			return "", fmt.Errorf("runc path %q built into the shim is not absolute", built)
		}
		return built, nil
	}
	for _, candidate := range locations {
		info, err := os.Stat(candidate)
		if err != nil || info.IsDir() || info.Mode().Perm()&0o111 == 0 || sameFile(candidate, self) {
			continue
		}
		return candidate, nil
	}
	return "", fmt.Errorf("no runc in %s", strings.Join(locations, ", "))
}

func sameFile(a, b string) bool {
	if b == "" {
		return false
	}
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(ia, ib)
}

// rewrite edits the spec file the runc command line refers to, if any.
func rewrite(args []string) error {
	command, rest := subcommand(args)
	switch command {
	case "create", "run":
		bundle := flagValue(rest, "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		return edit(filepath.Join(bundle, "config.json"), func(doc map[string]any) map[string]any {
			process, _ := doc["process"].(map[string]any)
			if process == nil {
				return nil
			}
			caps, _ := process["capabilities"].(map[string]any)
			return caps
		})
	case "exec":
		if path := flagValue(rest, "--process", "-p"); path != "" {
			return edit(path, func(doc map[string]any) map[string]any {
				caps, _ := doc["capabilities"].(map[string]any)
				return caps
			})
		}
	}
	return nil
}

// subcommand skips runc's global flags and returns the command and its arguments.
func subcommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") {
			return arg, args[i+1:]
		}
		if globalFlagsWithValue[arg] {
			i++
		}
	}
	return "", nil
}

func flagValue(args []string, names ...string) string {
	for i, arg := range args {
		for _, name := range names {
			if arg == name && i+1 < len(args) {
				return args[i+1]
			}
			if strings.HasPrefix(arg, name+"=") {
				return strings.TrimPrefix(arg, name+"=")
			}
		}
	}
	return ""
}

// edit removes the dropped capabilities from the capability sets that
// locate finds in the JSON file at path, keeping every other field.
func edit(path string, locate func(map[string]any) map[string]any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, changed, err := dropCapabilities(data, locate)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !changed {
		return nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".capshim"
	if err := os.WriteFile(tmp, out, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// dropCapabilities returns data without the dropped capabilities and whether
// any was there. Numbers are kept as their literal text (UseNumber): a
// float64 round trip would turn 18446744073709551615 (a memory limit of
// "unlimited") into 18446744073709552000, which runc then rejects or misreads.
func dropCapabilities(data []byte, locate func(map[string]any) map[string]any) ([]byte, bool, error) {
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var doc map[string]any
	if err := decoder.Decode(&doc); err != nil {
		return nil, false, err
	}
	if _, err := decoder.Token(); !errors.Is(err, io.EOF) {
		return nil, false, errors.New("unexpected data after the JSON document")
	}
	caps := locate(doc)
	changed := false
	for set, value := range caps {
		list, ok := value.([]any)
		if !ok {
			continue
		}
		kept := list[:0:0]
		for _, c := range list {
			if name, _ := c.(string); dropped[name] {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	if !changed {
		return data, false, nil
	}
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(doc); err != nil {
		return nil, false, err
	}
	return out.Bytes(), true, nil
}
