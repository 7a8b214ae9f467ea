package agentproxy

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// fakeProcs is a process table from a map: the platform part replaced, so
// the walk and the checks that macOS and FreeBSD share with Linux run here.
type fakeProcs map[int]procInfo

func (t fakeProcs) proc(pid int) (procInfo, error) {
	p, ok := t[pid]
	if !ok {
		return procInfo{}, os.ErrNotExist
	}
	return p, nil
}

func (t fakeProcs) args(pid int) ([]string, error) { return nil, errNoProcInfo }

// A login as a macOS process table shows it: launchd(1) → Terminal →
// zsh → git → ssh → the hint (warden-agent) from ssh's Match exec; plus
// another user's process whose executable the table does not give.
var loginTable = fakeProcs{
	1:    {Name: "launchd", Exe: "/sbin/launchd", Ppid: 0},
	400:  {Name: "Terminal", Exe: "/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal", Ppid: 1},
	410:  {Name: "zsh", Exe: "/bin/zsh", Ppid: 400},
	4240: {Name: "git", Exe: "/usr/bin/git", Ppid: 410},
	4242: {Name: "ssh", Exe: "/usr/bin/ssh", Ppid: 4240},
	4243: {Name: "sh", Exe: "/bin/sh", Ppid: 4242},
	4244: {Name: "warden-agent", Exe: "/usr/local/bin/warden-agent", Ppid: 4243},
	5000: {Name: "warden-agent", Exe: "/usr/local/bin/warden-agent", Ppid: 410},
	6000: {Name: "cron", Exe: "", Ppid: 1},
	6001: {Name: "job", Exe: "/usr/bin/job", Ppid: 6000},
	// A table that loops (pid reuse caught mid-walk) and one that points
	// at a process that is gone.
	7000: {Name: "a", Ppid: 7001},
	7001: {Name: "b", Ppid: 7000},
	8000: {Name: "orphan", Ppid: 8999},
}

func TestChainOf(t *testing.T) {
	got := chainOf(loginTable, 4242)
	want := []Process{
		{Pid: 4242, Name: "ssh", Exe: "/usr/bin/ssh"},
		{Pid: 4240, Name: "git", Exe: "/usr/bin/git"},
		{Pid: 410, Name: "zsh", Exe: "/bin/zsh"},
		{Pid: 400, Name: "Terminal", Exe: "/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("chain of ssh:\n got %+v\nwant %+v", got, want)
	}
	if s := (Peer{Chain: got}).ChainString(); s != "ssh(4242) ← git(4240) ← zsh(410) ← Terminal(400)" {
		t.Errorf("ChainString = %q", s)
	}
	// Another user's process: the name stays, the executable is unknown.
	if got := chainOf(loginTable, 6001); len(got) != 2 || got[1].Exe != "" || got[1].Name != "cron" {
		t.Errorf("chain through another user's process: %+v", got)
	}
	// Bounded: a loop ends after maxChain links.
	if got := chainOf(loginTable, 7000); len(got) != maxChain {
		t.Errorf("a looping table gave %d links, want maxChain=%d", len(got), maxChain)
	}
	// A gone parent ends the chain; an unknown pid (0) gives none.
	if got := chainOf(loginTable, 8000); len(got) != 1 {
		t.Errorf("orphan chain: %+v", got)
	}
	if got := chainOf(loginTable, 0); got != nil {
		t.Errorf("pid 0 chain: %+v", got)
	}
}

func TestIsDescendant(t *testing.T) {
	for _, c := range []struct {
		name          string
		pid, ancestor int
		want          bool
	}{
		{"the hint from ssh's Match exec (grandchild)", 4244, 4242, true},
		{"direct child", 4243, 4242, true},
		{"far descendant", 4244, 400, true},
		{"another warden-agent of the same shell", 5000, 4242, false},
		{"the ancestor is not its own descendant", 4242, 4242, false},
		{"parent is no descendant of its child", 4242, 4244, false},
		{"unknown peer pid (0) fails closed", 0, 4242, false},
		{"init as the ancestor proves nothing", 4244, 1, false},
		{"a looping table fails closed", 7000, 9999, false},
		{"the recorded parent counts though it is gone", 8000, 8999, true},
		{"a pid not in the table fails closed", 9999, 1, false},
		{"through a process whose exe is hidden", 6001, 6000, true},
	} {
		if got := isDescendant(loginTable, c.pid, c.ancestor); got != c.want {
			t.Errorf("%s: isDescendant(%d, %d) = %v, want %v", c.name, c.pid, c.ancestor, got, c.want)
		}
	}
}

// A platform without a process table (errNoProcInfo) answers no to every
// question: no chain, not a descendant.
func TestNoProcessTable(t *testing.T) {
	var empty fakeProcs
	if chainOf(empty, 4242) != nil || isDescendant(empty, 4244, 4242) {
		t.Error("an empty table must give no chain and no descendant")
	}
}

// The credentials of a real connection are this process's, on every
// platform (SO_PEERCRED, LOCAL_PEERCRED + LOCAL_PEERPID).
func TestPeerCredRealSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	pid, uid, err := peerCred(sc)
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() || uid != os.Getuid() {
		t.Errorf("peerCred = pid %d uid %d, want %d %d", pid, uid, os.Getpid(), os.Getuid())
	}
	p := readPeer("", pid, uid)
	if len(p.Chain) == 0 || p.Chain[0].Pid != pid || !sameExecutable(p.Exe) {
		t.Errorf("readPeer of this process: %+v (exe must be this test binary)", p)
	}
}
