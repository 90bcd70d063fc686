// Command probe is the test workload of the cluster e2e tests.
//
// No registry is reachable on our CI hosts, so the tests cannot pull a
// busybox or an HTTP echo image. This one static binary, imported as an
// image and `kind load`ed, serves HTTP, fetches a URL, or reports its
// capabilities, which is all the cluster tests need.
//
//	probe serve :8080        answer every request with "probe <hostname>"
//	probe get URL [TRIES]    print the body of URL, retrying until it answers
//	probe caps               print CapEff and whether it is privileged-wide
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe serve ADDR | get URL [TRIES] | caps")
	}
	switch os.Args[1] {
	case "serve":
		serve(arg(2, ":8080"))
	case "get":
		tries, _ := strconv.Atoi(arg(3, "30"))
		get(arg(2, ""), tries)
	case "caps":
		caps()
	default:
		fail("unknown command " + os.Args[1])
	}
}

func arg(i int, fallback string) string {
	if len(os.Args) > i {
		return os.Args[i]
	}
	return fallback
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "probe: "+message)
	os.Exit(1)
}

func serve(addr string) {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "probe %s\n", host)
	})
	fail(http.ListenAndServe(addr, nil).Error())
}

func get(url string, tries int) {
	client := &http.Client{Timeout: 5 * time.Second}
	var last error
	for i := 0; i < tries; i++ {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Print(string(body))
				return
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		last = err
		time.Sleep(time.Second)
	}
	fail(fmt.Sprintf("get %s: %v", url, last))
}

func caps() {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fail(err.Error())
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "CapEff:") {
			fmt.Println(strings.TrimSpace(strings.TrimPrefix(line, "CapEff:")))
			return
		}
	}
	fail("no CapEff in /proc/self/status")
}
