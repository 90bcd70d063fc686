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
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

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
	runc, err := realRunc()
	if err != nil {
		fmt.Fprintf(os.Stderr, "runc-capshim: %v\n", err)
		os.Exit(1)
	}
	err = syscall.Exec(runc, append([]string{"runc"}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "runc-capshim: exec %s: %v\n", runc, err)
	os.Exit(1)
}

// realRunc finds runc on PATH, skipping this binary if it is named runc too.
func realRunc() (string, error) {
	self, _ := os.Executable()
	for _, dir := range filepath.SplitList(os.Getenv("PATH") + ":/usr/sbin:/usr/bin:/usr/local/sbin") {
		candidate := filepath.Join(dir, "runc")
		if info, err := os.Stat(candidate); err == nil && !info.IsDir() && candidate != self {
			return candidate, nil
		}
	}
	return exec.LookPath("runc")
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
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
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
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
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
