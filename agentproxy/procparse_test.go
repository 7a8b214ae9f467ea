package agentproxy

import (
	"bytes"
	"encoding/binary"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses, as a process may choose.
	line := "4242 (ssh (evil) 1 2) S 4240 4242 410 34816 4242 4194304 " + strings.Repeat("0 ", 12) + "987654 0 0\n"
	name, ppid, start, err := parseStat([]byte(line))
	if err != nil || name != "ssh (evil) 1 2" || ppid != 4240 || start != 987654 {
		t.Errorf("parseStat = %q %d %d %v", name, ppid, start, err)
	}
	for _, bad := range []string{"", "4242 ssh S 1", "4242 (ssh) S", "4242 (ssh) S x " + strings.Repeat("0 ", 20)} {
		if _, _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		if _, ppid, _, err := parseStat(b); err != nil || ppid != os.Getppid() {
			t.Errorf("own stat: ppid %d, %v", ppid, err)
		}
	}
}

// procArgs2 builds a macOS kern.procargs2 record.
func procArgs2(argc int32, exe string, pad int, args ...string) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.NativeEndian, argc)
	b.WriteString(exe)
	b.Write(make([]byte, 1+pad))
	for _, a := range args {
		b.WriteString(a)
		b.WriteByte(0)
	}
	return b.Bytes()
}

func TestParseProcArgs2(t *testing.T) {
	rec := procArgs2(3, "/usr/bin/ssh", 5, "ssh", "-G", "prod", "PATH=/usr/bin", "HOME=/Users/me")
	exe, argv, err := parseProcArgs2(rec)
	if err != nil || exe != "/usr/bin/ssh" || !reflect.DeepEqual(argv, []string{"ssh", "-G", "prod"}) {
		t.Errorf("parseProcArgs2 = %q %q %v", exe, argv, err)
	}
	if !isNoLogin(argv) {
		t.Error("ssh -G read from procargs2 must count as no login")
	}
	// argc larger than what follows, no terminator, negative argc, short.
	if _, argv, err := parseProcArgs2(procArgs2(9, "/x", 0, "a")); err != nil || len(argv) != 1 {
		t.Errorf("short argv: %q %v", argv, err)
	}
	for _, bad := range [][]byte{nil, {1, 0}, procArgs2(-1, "/x", 0), append(procArgs2(1, "", 0)[:4], "/no-nul"...)} {
		if _, _, err := parseProcArgs2(bad); err == nil {
			t.Errorf("parseProcArgs2(%q) accepted", bad)
		}
	}
}

// kinfoProc builds a FreeBSD kinfo_proc (64-bit layout).
func kinfoProc(size uint32, pid, ppid int32, sec, usec uint64, comm string) []byte {
	b := make([]byte, kinfoProcSize64)
	ne := binary.NativeEndian
	ne.PutUint32(b, size)
	ne.PutUint32(b[kiPidOff:], uint32(pid))
	ne.PutUint32(b[kiPpidOff:], uint32(ppid))
	ne.PutUint64(b[kiStartOff:], sec)
	ne.PutUint64(b[kiStartOff+8:], usec)
	copy(b[kiCommOff:kiCommOff+kiCommLen], comm)
	return b
}

func TestParseKinfoProcFreeBSD(t *testing.T) {
	pid, p, err := parseKinfoProcFreeBSD(kinfoProc(kinfoProcSize64, 4242, 4240, 1700000000, 250000, "ssh"))
	want := procInfo{Name: "ssh", Ppid: 4240, Start: 1700000000*1_000_000 + 250000}
	if err != nil || pid != 4242 || p != want {
		t.Errorf("parseKinfoProcFreeBSD = %d %+v %v", pid, p, err)
	}
	// A 19-byte name fills ki_comm but for its NUL.
	if _, p, _ := parseKinfoProcFreeBSD(kinfoProc(kinfoProcSize64, 1, 0, 0, 0, strings.Repeat("n", 25))); p.Name != strings.Repeat("n", kiCommLen) {
		t.Errorf("overlong comm: %q", p.Name)
	}
	for _, bad := range [][]byte{nil, kinfoProc(1096, 1, 0, 0, 0, "x"), kinfoProc(kinfoProcSize64, 1, 0, 0, 0, "x")[:kinfoProcSize64-1]} {
		if _, _, err := parseKinfoProcFreeBSD(bad); err == nil {
			t.Errorf("parseKinfoProcFreeBSD accepted a %d-byte record", len(bad))
		}
	}
}

func TestNulStrings(t *testing.T) {
	if got := nulStrings([]byte("ssh\x00-O\x00check\x00host\x00")); !reflect.DeepEqual(got, []string{"ssh", "-O", "check", "host"}) {
		t.Errorf("nulStrings = %q", got)
	}
	if nulStrings(nil) != nil || nulStrings([]byte{0, 0}) != nil {
		t.Error("empty cmdline must give nil")
	}
	if got := nulStrings(bytes.Repeat([]byte("a\x00"), maxArgs+10)); len(got) != maxArgs {
		t.Errorf("argv not bounded: %d", len(got))
	}
}

// FuzzProcRecords runs every process-record parser over arbitrary bytes:
// argv and command names are the peer's choice.
func FuzzProcRecords(f *testing.F) {
	f.Add([]byte("4242 (ssh) S 4240 4242 410 34816 4242 4194304 0 0 0 0 0 0 0 0 0 0 0 0 987654 0 0"))
	f.Add(procArgs2(3, "/usr/bin/ssh", 5, "ssh", "-G", "prod"))
	f.Add(kinfoProc(kinfoProcSize64, 4242, 4240, 1, 2, "ssh"))
	f.Add([]byte("ssh\x00-O\x00check\x00"))
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parseStat(b)
		if _, argv, err := parseProcArgs2(b); err == nil && len(argv) > maxArgs {
			t.Fatalf("procargs2 argv %d > maxArgs", len(argv))
		}
		parseKinfoProcFreeBSD(b)
		if len(nulStrings(b)) > maxArgs {
			t.Fatal("nulStrings not bounded")
		}
	})
}
