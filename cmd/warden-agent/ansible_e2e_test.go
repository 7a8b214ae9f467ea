package main

// End-to-end test of issue 8's Ansible habit with the real programs
// (Debian's ansible-core: /usr/bin/ansible and /usr/bin/ansible-playbook):
// an inventory of five aliases on one loopback sshd that trusts warden's
// CA, run with forks 10, Ansible's own ssh connection plugin and its
// default ControlMaster=auto/ControlPersist=60s, the generated ssh_config
// (warden's Match exec block) passed as ansible_ssh_common_args=-F.
// Every ssh process Ansible starts runs the hint; the agent issues one
// certificate per route and principal and reuses it while it is fresh.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ansibleHosts are the inventory aliases and the address each one's
// ansible_host names: three by address (route fleet-ip), two by name
// (route fleet-name), all the same sshd.
var ansibleHosts = []struct{ alias, host string }{
	{"web1", "127.0.0.1"}, {"web2", "127.0.0.1"}, {"web3", "127.0.0.1"},
	{"db1", "localhost"}, {"db2", "localhost"},
}

// ansibleRoutes maps each route to the host its aliases connect to.
var ansibleRoutes = map[string]string{"fleet-ip": "127.0.0.1", "fleet-name": "localhost"}

func needAnsible(t *testing.T) {
	t.Helper()
	for _, p := range []string{"ansible", "ansible-playbook"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (apt-get install --no-install-recommends ansible-core): %v", p, err)
		}
	}
	if _, err := os.Stat(debianPython); err != nil {
		t.Skipf("%s is not installed (the remote python of the test; apt-get install python3): %v", debianPython, err)
	}
}

// ansibleLab is an agent, an sshd, the generated ssh_config and an Ansible
// project directory (ansible.cfg, inventory, temp dirs) around them.
type ansibleLab struct {
	e       *testEnv
	a       *agentProc
	s       *sshdProc
	user    string
	cfg     string // ssh_config
	ansible string // ansible.cfg
	cpDir   string // ControlPath directory
	outDir  string // where the playbook's copy task writes
}

func newAnsibleLab(t *testing.T) *ansibleLab {
	t.Helper()
	needAnsible(t)
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	l := &ansibleLab{user: loginUser(t), e: newTestEnv(t)}
	e := l.e
	var routes strings.Builder
	routes.WriteString("routes:\n")
	for _, name := range ansibleRouteNames(ansibleRoutes) {
		fmt.Fprintf(&routes, "  - name: %s\n    hosts: [%q]\n    principals: [%q]\n    ttl: 5m\n", name, ansibleRoutes[name], l.user)
	}
	e.writeConfig(routes.String())
	l.a = startAgent(t, e, nil, "--upstream", "none")
	l.s = startSSHD(t, l.a.ca)

	// e.sshConfig writes known_hosts for [127.0.0.1]:port and
	// [localhost]:port and the file with warden's Match block; Ansible
	// connects to the addresses themselves (ansible_host), so a Host block
	// for them goes first. Port and user come from Ansible's -o options;
	// ControlMaster, ControlPersist and ControlPath from its defaults,
	// which take precedence over the file.
	gen := e.sshConfig(l.s, l.a.socket)
	data, err := os.ReadFile(gen)
	if err != nil {
		t.Fatal(err)
	}
	l.cfg = gen
	writeFile(t, l.cfg, fmt.Sprintf(`Host 127.0.0.1 localhost
    AddressFamily inet
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    IdentityFile %s/no-such-key
`, filepath.Join(l.s.dir, "known_hosts"), e.dir)+string(data))
	if strings.ContainsAny(l.cfg, " '\"\\") {
		t.Skipf("config path %q needs quoting in ansible_ssh_common_args", l.cfg)
	}

	// A short ControlPath directory: ssh adds 17 characters to the
	// socket name while it creates it, and unix socket paths end at 108.
	l.cpDir = filepath.Join(e.dir, "cp")
	l.outDir = filepath.Join(e.dir, "out")
	for _, d := range []string{l.cpDir, l.outDir, filepath.Join(e.dir, "atmp-local"), filepath.Join(e.dir, "atmp-remote")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var inv strings.Builder
	inv.WriteString("[fleet]\n")
	for _, h := range ansibleHosts {
		fmt.Fprintf(&inv, "%s ansible_host=%s\n", h.alias, h.host)
	}
	fmt.Fprintf(&inv, `
[fleet:vars]
ansible_port=%d
ansible_user=%s
ansible_python_interpreter=%s
ansible_ssh_common_args=-F %s
`, l.s.port, l.user, debianPython, l.cfg)
	invPath := filepath.Join(e.dir, "inventory.ini")
	writeFile(t, invPath, inv.String())
	l.ansible = filepath.Join(e.dir, "ansible.cfg")
	writeFile(t, l.ansible, fmt.Sprintf(`[defaults]
inventory = %s
forks = 10
host_key_checking = True
gathering = explicit
retry_files_enabled = False
local_tmp = %s
remote_tmp = %s

[ssh_connection]
control_path_dir = %s
`, invPath, filepath.Join(e.dir, "atmp-local"), filepath.Join(e.dir, "atmp-remote"), l.cpDir))

	// Runs before sshd and the agent stop (cleanups run last first): no
	// ControlPersist master may outlive the test.
	t.Cleanup(l.closeMasters)
	return l
}

func ansibleRouteNames(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// masters lists the ControlPersist masters' sockets.
func (l *ansibleLab) masters() []string {
	m, _ := filepath.Glob(filepath.Join(l.cpDir, "*"))
	return m
}

// closeMasters ends every ControlPersist master with `ssh -O exit` and
// waits for its socket to go.
func (l *ansibleLab) closeMasters() {
	for _, sock := range l.masters() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		cmd := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-o", "ControlPath="+sock, "-O", "exit", "master")
		cmd.Env = l.e.environ()
		cmd.Run()
		cancel()
	}
	waitFor(10*time.Second, func() bool { return len(l.masters()) == 0 })
}

// run runs an Ansible program in the project directory with the test's
// environment: ansible.cfg, a UTF-8 locale (ansible-core refuses others),
// the test's JSON stdout callback (also for ad-hoc commands), temp dirs under
// the test directory and SSH_AUTH_SOCK at warden. Ansible with five hosts
// through race-built hints is slow on a busy machine: the bound is
// generous.
func (l *ansibleLab) run(t *testing.T, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = l.e.dir
	cmd.Env = l.e.environ(
		"ANSIBLE_CONFIG="+l.ansible,
		"ANSIBLE_HOST_KEY_CHECKING=True",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(l.e.dir, "atmp-local"),
		"ANSIBLE_REMOTE_TEMP="+filepath.Join(l.e.dir, "atmp-remote"),
		// ansible-core has no json callback of its own: the test ships one.
		"ANSIBLE_CALLBACK_PLUGINS="+ansibleCallbacks(t),
		"ANSIBLE_STDOUT_CALLBACK=warden_json",
		"ANSIBLE_LOAD_CALLBACK_PLUGINS=1",
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_FORCE_COLOR=0",
		"LC_ALL=C.UTF-8", "LANG=C.UTF-8",
		"SSH_AUTH_SOCK="+l.a.socket,
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Its own process group, so a timeout also ends the ssh processes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), err: err, code: -1}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	t.Logf("%s %s: exit %d in %v", name, strings.Join(args, " "), r.code, time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out\n%s", name, strings.Join(args, " "), r)
	}
	return r
}

// ansibleCallbacks is the directory of the test's stdout callback.
func ansibleCallbacks(t *testing.T) string {
	dir, err := filepath.Abs(filepath.Join("testdata", "ansible", "callback_plugins"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// ansibleJSON is the part of the json stdout callback's output the test
// reads.
type ansibleJSON struct {
	Plays []struct {
		Tasks []struct {
			Task struct {
				Name string `json:"name"`
			} `json:"task"`
			Hosts map[string]map[string]any `json:"hosts"`
		} `json:"tasks"`
	} `json:"plays"`
	Stats map[string]struct {
		OK          int `json:"ok"`
		Changed     int `json:"changed"`
		Failures    int `json:"failures"`
		Unreachable int `json:"unreachable"`
		Skipped     int `json:"skipped"`
	} `json:"stats"`
}

// parseAnsible parses the json callback's output and checks that every
// alias ran every task: ok == tasks, no failure, nothing unreachable.
func parseAnsible(t *testing.T, r result, tasks int) *ansibleJSON {
	t.Helper()
	var out ansibleJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("ansible output is not the json callback's: %v\n%s", err, r)
	}
	if r.code != 0 {
		t.Errorf("ansible exited %d, want 0\n%s", r.code, r)
	}
	if len(out.Plays) != 1 || len(out.Plays[0].Tasks) != tasks {
		t.Fatalf("want one play with %d task(s), got %+v\n%s", tasks, out.Plays, r)
	}
	for _, h := range ansibleHosts {
		st, ok := out.Stats[h.alias]
		if !ok {
			t.Errorf("no stats for %s", h.alias)
			continue
		}
		if st.OK != tasks || st.Failures != 0 || st.Unreachable != 0 {
			t.Errorf("%s: ok=%d failed=%d unreachable=%d, want ok=%d failed=0 unreachable=0", h.alias, st.OK, st.Failures, st.Unreachable, tasks)
		}
		for _, task := range out.Plays[0].Tasks {
			res := task.Hosts[h.alias]
			if res == nil || res["failed"] == true || res["unreachable"] == true {
				t.Errorf("%s, task %q: %v", h.alias, task.Task.Name, res)
			}
		}
	}
	if len(out.Stats) != len(ansibleHosts) {
		t.Errorf("stats for %d hosts, want %d: %v", len(out.Stats), len(ansibleHosts), out.Stats)
	}
	if t.Failed() {
		t.Logf("ansible: %s", r)
	}
	return &out
}

// checkAudit checks the audit log against sshd after Ansible ran: exactly
// one cert.issued per route, for user; every cert.used is on one of them,
// with its route's serial, for user, on a bound connection; each route
// has at least minUsed uses; no denial or failed issuance; sshd saw one
// certificate login per cert.used. It returns the cert.used count per
// route.
func (l *ansibleLab) checkAudit(t *testing.T, minUsed int) map[string]int {
	t.Helper()
	recs := l.a.audit(t)
	issued := events(recs, "cert.issued")
	// One certificate per route and principal, except where the cache
	// refreshed it ahead: a login when less than a third of the
	// certificate's lifetime was left (signer.Cache) gets a new one. A slow
	// machine (the ping and playbooks taking more than two thirds of the
	// 5m TTL) reaches that edge; a second issuance before it is a fault.
	serials := map[string][]string{}
	last := map[string]auditRecord{}
	for _, r := range issued {
		route := r.str("route")
		if prev, ok := last[route]; ok {
			if at, edge := recTime(t, r, "time"), refreshEdge(t, prev); at.Before(edge) {
				t.Errorf("a second cert.issued on route %s at %s, before the first certificate's refresh edge %s: %v", route, at, edge, r)
			} else {
				t.Logf("route %s: certificate refreshed ahead at %s (edge %s)", route, at, edge)
			}
		}
		last[route] = r
		serials[route] = append(serials[route], r.str("serial"))
		if r.str("principal") != l.user || !slices.Equal(stringList(r["principals"]), []string{l.user}) {
			t.Errorf("cert.issued %v: want principal %s only", r, l.user)
		}
	}
	if len(serials) != len(ansibleRoutes) {
		t.Errorf("want cert.issued on each of the %d routes, got %d: %v", len(ansibleRoutes), len(serials), issued)
	}
	used := map[string]int{}
	for _, u := range events(recs, "cert.used") {
		route := u.str("route")
		if _, ok := ansibleRoutes[route]; !ok || !slices.Contains(serials[route], u.str("serial")) || u.str("user") != l.user || fmt.Sprint(u["bound"]) != "true" {
			t.Errorf("cert.used %v: want route fleet-ip or fleet-name with an issued serial of it, user %s, bound true", u, l.user)
		}
		used[route]++
	}
	for route, host := range ansibleRoutes {
		if used[route] < minUsed {
			t.Errorf("route %s: %d cert.used, want at least %d", route, used[route], minUsed)
		}
		if len(events(recs, "hint", "host", host, "user", l.user)) == 0 {
			t.Errorf("no hint for %s@%s: Ansible's ssh did not run the Match block", l.user, host)
		}
	}
	for _, ev := range []string{"sign.denied", "cert.issue_failed", "upstream.used"} {
		if got := events(recs, ev); len(got) != 0 {
			t.Errorf("%d %s records: %v", len(got), ev, got)
		}
	}
	total := used["fleet-ip"] + used["fleet-name"]
	if n := l.s.certLogins(l.user); n != total {
		t.Errorf("sshd accepted %d certificate logins, the audit log has %d cert.used", n, total)
	}
	t.Logf("cert.used per route: %v; hints: %d; ControlPersist masters: %d", used, len(events(recs, "hint")), len(l.masters()))
	return used
}

// TestE2EAnsible: `ansible all -m ping`, then a two-task playbook
// (command: id -un; copy into the test directory) over the masters the
// ping left, then the playbook again after the masters were closed. Each
// alias succeeds at every step; the agent issues one certificate per route
// (fleet-ip for 127.0.0.1, fleet-name for localhost) and principal for
// the whole test, and every login is a cert.used with that certificate.
func TestE2EAnsible(t *testing.T) {
	l := newAnsibleLab(t)

	// (a) ad-hoc ping.
	ping := parseAnsible(t, l.run(t, "ansible", "fleet", "-m", "ping", "-f", "10"), 1)
	for _, h := range ansibleHosts {
		if res := ping.Plays[0].Tasks[0].Hosts[h.alias]; res == nil || res["ping"] != "pong" {
			t.Errorf("%s: ping result %v, want ping: pong", h.alias, res)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	afterPing := l.checkAudit(t, 1)
	if len(l.masters()) == 0 {
		t.Errorf("no ControlPersist master in %s after the ping: Ansible's defaults did not apply", l.cpDir)
	}

	// (b) the playbook.
	book := filepath.Join(l.e.dir, "site.yml")
	writeFile(t, book, fmt.Sprintf(`- hosts: fleet
  gather_facts: false
  tasks:
    - name: remote user
      command: id -un
      register: who
      changed_when: false
    - name: drop a file
      copy:
        content: "{{ inventory_hostname }} via warden\n"
        dest: "%s/{{ inventory_hostname }}.txt"
        mode: "0600"
`, l.outDir))
	playbook := func(t *testing.T) *ansibleJSON {
		t.Helper()
		out := parseAnsible(t, l.run(t, "ansible-playbook", "-f", "10", book), 2)
		for _, h := range ansibleHosts {
			if res := out.Plays[0].Tasks[0].Hosts[h.alias]; res == nil || res["stdout"] != l.user {
				t.Errorf("%s: id -un printed %v, want %q", h.alias, res["stdout"], l.user)
			}
			got, err := os.ReadFile(filepath.Join(l.outDir, h.alias+".txt"))
			if err != nil || string(got) != h.alias+" via warden\n" {
				t.Errorf("%s: the copy task's file: %q, %v", h.alias, got, err)
			}
		}
		return out
	}

	t.Run("playbook over the open masters", func(t *testing.T) {
		out := playbook(t)
		for _, h := range ansibleHosts {
			if res := out.Plays[0].Tasks[1].Hosts[h.alias]; res == nil || res["changed"] != true {
				t.Errorf("%s: the first copy did not change anything: %v", h.alias, res)
			}
		}
		used := l.checkAudit(t, 1)
		// The masters persist 60 s: the playbook's ssh processes ride them
		// and log in again only where a master was not there.
		t.Logf("cert.used per route after the ping: %v, after the playbook: %v", afterPing, used)
	})

	t.Run("playbook after the masters exited", func(t *testing.T) {
		before := l.checkAudit(t, 1)
		l.closeMasters()
		if m := l.masters(); len(m) != 0 {
			t.Fatalf("ControlPersist masters still there after ssh -O exit: %v", m)
		}
		playbook(t)
		// New logins, with the cached certificates: still one issuance per
		// route.
		after := l.checkAudit(t, 1)
		for route := range ansibleRoutes {
			if after[route] <= before[route] {
				t.Errorf("route %s: cert.used stayed at %d: the playbook did not log in again after the masters exited", route, after[route])
			}
		}
	})
}

// recTime parses an RFC 3339 time field of an audit record.
func recTime(t *testing.T, r auditRecord, field string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, r.str(field))
	if err != nil {
		t.Fatalf("record %v: %s: %v", r, field, err)
	}
	return at
}

// refreshEdge is when a login starts refreshing the certificate of a
// cert.issued record ahead: when a third of its lifetime (issuance to
// valid_before) is left. Two seconds of slack cover the time between the
// issuance and its record.
func refreshEdge(t *testing.T, issued auditRecord) time.Time {
	t.Helper()
	at, before := recTime(t, issued, "time"), recTime(t, issued, "valid_before")
	return before.Add(-before.Sub(at) / 3).Add(-2 * time.Second)
}
