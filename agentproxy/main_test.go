package agentproxy

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestMain lets the test binary play `warden-agent hint` as a process of
// its own (hintFromChild): a hint is answered only for the caller's own
// ssh, so a test that needs hints for several "ssh processes" at once
// runs each in a child, which is also the same executable as the agent
// under test (as warden-agent hint is the same as warden-agent run).
func TestMain(m *testing.M) {
	if sock := os.Getenv("WARDEN_TEST_STATUS_SOCKET"); sock != "" {
		var reply json.RawMessage
		if err := CallExtension(sock, ExtStatus, struct{}{}, &reply, 30*time.Second); err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(2)
		}
		os.Exit(0)
	}
	if sock := os.Getenv("WARDEN_TEST_HINT_SOCKET"); sock != "" {
		port, _ := strconv.Atoi(os.Getenv("WARDEN_TEST_HINT_PORT"))
		var reply HintReply
		err := CallExtension(sock, ExtHint, HintRequest{SSHPid: os.Getpid(), User: os.Getenv("WARDEN_TEST_HINT_USER"),
			Host: os.Getenv("WARDEN_TEST_HINT_HOST"), Port: port}, &reply, 30*time.Second)
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(2)
		}
		json.NewEncoder(os.Stdout).Encode(reply)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// hintFromChild sends a hint for user@host from a child process of this
// test binary, naming the child's own pid, and returns the reply.
func hintFromChild(t testing.TB, socket, user, host string) (HintReply, error) {
	t.Helper()
	return hintFromProgram(t, os.Args[0], socket, user, host)
}

// hintFromProgram is hintFromChild with the child running program (a
// copy of this test binary).
func hintFromProgram(t testing.TB, program, socket, user, host string) (HintReply, error) {
	t.Helper()
	cmd := exec.Command(program, "-test.run=^$")
	cmd.Env = append(os.Environ(), "WARDEN_TEST_HINT_SOCKET="+socket, "WARDEN_TEST_HINT_USER="+user,
		"WARDEN_TEST_HINT_HOST="+host, "WARDEN_TEST_HINT_PORT=22")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return HintReply{}, &hintChildError{string(ee.Stderr)}
		}
		return HintReply{}, err
	}
	var reply HintReply
	err = json.Unmarshal(out, &reply)
	return reply, err
}

type hintChildError struct{ msg string }

func (e *hintChildError) Error() string { return "hint child: " + e.msg }
