package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func processCaps(doc map[string]any) map[string]any {
	process, _ := doc["process"].(map[string]any)
	caps, _ := process["capabilities"].(map[string]any)
	return caps
}

func TestLargeIntegersSurviveTheRewrite(t *testing.T) {
	in := `{"linux":{"resources":{"memory":{"limit":18446744073709551615,"swap":9007199254740993},` +
		`"cpu":{"quota":-1,"period":100000}}},"weight":1.50,` +
		`"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE"]}},"note":"a<b&c"}`
	out, changed, err := dropCapabilities([]byte(in), processCaps)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	for _, literal := range []string{
		`18446744073709551615`, `9007199254740993`, `"quota":-1`, `100000`, `1.50`, `"a<b&c"`,
		`"bounding":["CAP_CHOWN"]`,
	} {
		if !strings.Contains(string(out), literal) {
			t.Errorf("%s missing from %s", literal, out)
		}
	}
}

func TestUnchangedSpecIsLeftAlone(t *testing.T) {
	in := []byte(`{"process":{"capabilities":{"bounding":["CAP_CHOWN"]}}}`)
	out, changed, err := dropCapabilities(in, processCaps)
	if err != nil || changed || string(out) != string(in) {
		t.Fatalf("out=%s changed=%v err=%v", out, changed, err)
	}
}

func TestTrailingGarbageIsAnError(t *testing.T) {
	if _, _, err := dropCapabilities([]byte(`{} {}`), processCaps); err == nil {
		t.Fatal("no error for two documents")
	}
}

func TestBuiltPathWinsAndMustBeAbsolute(t *testing.T) {
	if got, err := realRunc("/opt/runc", nil, ""); err != nil || got != "/opt/runc" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := realRunc("runc", nil, ""); err == nil {
		t.Fatal("a relative runc path was accepted")
	}
}

func TestLocationsSkipMissingNonExecutableAndSelf(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	self := write("self", 0o755)
	plain := write("plain", 0o644)
	real := write("real", 0o755)
	locations := []string{filepath.Join(dir, "absent"), dir, plain, self, real}
	if got, err := realRunc("", locations, self); err != nil || got != real {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := realRunc("", locations[:4], self); err == nil {
		t.Fatal("found a runc where there is none")
	}
}

func TestPathIsNeverSearched(t *testing.T) {
	dir := t.TempDir()
	decoy := filepath.Join(dir, "runc")
	if err := os.WriteFile(decoy, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	if got, _ := realRunc("", []string{filepath.Join(dir, "absent")}, ""); got == decoy {
		t.Fatal("runc was taken from PATH")
	}
}
