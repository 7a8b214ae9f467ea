// Command warden-bench measures warden-agent side by side with OpenSSH's
// ssh-agent and the bare x/crypto keyring, in one run, on the same keys
// (issue 7, "Benchmarks"; the goals of issue 17). Every measurement is one
// JSON line in <out>/latest.jsonl; <out>/latest.md is the table of ratios
// and goals. Nothing is asserted: the numbers are reported.
//
// Every agent under test is a separate process, so its CPU time per
// operation is read from /proc/PID/stat; the CPU of a short-lived client
// (ssh, the hint) from its rusage when it is reaped. Run it through
// bench/run.sh (`make bench`), which builds warden-agent and this command
// first.
//
//	warden-bench -warden bin/warden-agent -ssh-agent /opt/openssh/bin/ssh-agent -out bench/results
//	warden-bench keyring-server -key FILE SOCKET   (the bare-keyring agent)
//	warden-bench idle-client -n N SOCKET           (holds idle connections for the RSS phase)
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// options are the command-line settings of a run.
type options struct {
	warden     string
	sshAgent   string
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
	rssRoutes  int
	hints      int
	burst      int
	batches    int
	riders     int
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
	if len(os.Args) > 1 && os.Args[1] == "idle-client" {
		if err := idleClient(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "warden-bench idle-client:", err)
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
	fs.StringVar(&o.warden, "warden", "bin/warden-agent", "warden-agent `binary` to measure (a prebuilt older one works: the harness only runs `run`, `hint`, `ssh-config` and `--version`)")
	fs.StringVar(&o.sshAgent, "ssh-agent", "ssh-agent", "OpenSSH ssh-agent `binary` for every ssh-agent the bench starts (default: the one on PATH)")
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
	fs.IntVar(&o.logins, "logins", 20, "sequential ssh logins per agent (login phase)")
	fs.IntVar(&o.idle, "idle", 1000, "idle connections for the RSS measurement")
	fs.IntVar(&o.rssRoutes, "rss-routes", 100, "routes whose certificates the RSS measurement's agent holds")
	fs.IntVar(&o.hints, "hints", 200, "`warden-agent hint` runs, and as many /bin/true runs (hint phase)")
	fs.IntVar(&o.burst, "burst", 200, "concurrent ssh logins per batch (burst phase)")
	fs.IntVar(&o.batches, "batches", 2, "measured batches per agent, after one warm-up batch of a quarter the size each (burst phase)")
	fs.IntVar(&o.riders, "riders", 20, "ssh sessions riding a ControlMaster, per agent (master phase)")
	fs.StringVar(&phases, "only", strings.Join(allPhases, ","), "phases to run")
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
		p = strings.TrimSpace(p)
		if !slices.Contains(allPhases, p) {
			return nil, fmt.Errorf("-only: unknown phase %q (phases: %s)", p, strings.Join(allPhases, ","))
		}
		o.phases[p] = true
	}
	if o.reps < 1 {
		return nil, fmt.Errorf("-reps must be at least 1")
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"logins", o.logins}, {"rss-routes", o.rssRoutes}, {"hints", o.hints}, {"burst", o.burst}, {"batches", o.batches}, {"riders", o.riders}} {
		if n.v < 1 {
			return nil, fmt.Errorf("-%s must be at least 1", n.name)
		}
	}
	if o.sshAgent, err = exec.LookPath(o.sshAgent); err != nil {
		return nil, fmt.Errorf("-ssh-agent: %w (install openssh-client or give the path of an ssh-agent binary)", err)
	}
	if o.sshAgent, err = filepath.Abs(o.sshAgent); err != nil {
		return nil, err
	}
	if o.warden, err = filepath.Abs(o.warden); err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.warden); err != nil {
		return nil, fmt.Errorf("-warden: %w (build it with `make build` or give the path of a warden-agent binary)", err)
	}
	return o, nil
}

// allPhases is every phase, in the order a run takes them.
var allPhases = []string{"sign", "list", "jit", "rss", "hint", "login", "burst", "master"}

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
