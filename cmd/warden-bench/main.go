// Command warden-bench measures warden-agent side by side with OpenSSH's
// ssh-agent and the bare x/crypto keyring, in one run, on the same keys
// (issue 7, "Benchmarks"). Every measurement is one JSON line in
// <out>/latest.jsonl; <out>/latest.md is the table of ratios. Nothing is
// asserted: the numbers are reported.
//
// Every agent under test is a separate process, so its CPU time per
// operation is read from /proc/PID/stat. Run it through bench/run.sh
// (`make bench`), which builds warden-agent and this command first.
//
//	warden-bench -warden bin/warden-agent -out bench/results
//	warden-bench keyring-server -key FILE SOCKET   (the bare-keyring agent)
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// options are the command-line settings of a run.
type options struct {
	warden     string
	out        string
	diskDir    string
	shmDir     string
	warmup     time.Duration
	window     time.Duration
	listWindow time.Duration
	reps       int
	clients    []int
	listKeys   []int
	coldN      int
	warmN      int
	logins     int
	idle       int
	phases     map[string]bool
	keep       bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "keyring-server" {
		if err := keyringServer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "warden-bench keyring-server:", err)
			os.Exit(1)
		}
		return
	}
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "warden-bench:", err)
		os.Exit(2)
	}
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "warden-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("warden-bench", flag.ContinueOnError)
	o := &options{}
	var clients, listKeys, phases string
	fs.StringVar(&o.warden, "warden", "bin/warden-agent", "warden-agent `binary` to run")
	fs.StringVar(&o.out, "out", "bench/results", "`directory` for latest.jsonl and latest.md")
	fs.StringVar(&o.diskDir, "disk-dir", os.TempDir(), "`directory` on a real disk for the fsync'd audit logs")
	fs.StringVar(&o.shmDir, "shm-dir", "/dev/shm", "tmpfs `directory` for the 'no fsync cost' audit logs")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "warm-up before each measured window")
	fs.DurationVar(&o.window, "window", 2*time.Second, "measured window of a signing measurement")
	fs.DurationVar(&o.listWindow, "list-window", time.Second, "measured window of a List measurement")
	fs.IntVar(&o.reps, "reps", 3, "repetitions (in a shuffled order each time)")
	fs.StringVar(&clients, "clients", "1,8,64", "concurrent clients for signing")
	fs.StringVar(&listKeys, "list-keys", "1,10,100", "upstream key counts for List")
	fs.IntVar(&o.coldN, "cold", 30, "cold issuances per repetition and issuer")
	fs.IntVar(&o.warmN, "warm", 100, "warm (cached) Lists per repetition and issuer")
	fs.IntVar(&o.logins, "logins", 20, "ssh logins per agent")
	fs.IntVar(&o.idle, "idle", 1000, "idle connections for the RSS measurement")
	fs.StringVar(&phases, "only", "sign,list,jit,rss,login", "phases to run")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch directories (agent logs, audit logs)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if o.clients, err = intList(clients); err != nil {
		return nil, fmt.Errorf("-clients: %w", err)
	}
	if o.listKeys, err = intList(listKeys); err != nil {
		return nil, fmt.Errorf("-list-keys: %w", err)
	}
	o.phases = map[string]bool{}
	for _, p := range strings.Split(phases, ",") {
		o.phases[strings.TrimSpace(p)] = true
	}
	if o.reps < 1 {
		return nil, fmt.Errorf("-reps must be at least 1")
	}
	return o, nil
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
