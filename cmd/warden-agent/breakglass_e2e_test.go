package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EBreakGlass: in the documented set-up (SSH_AUTH_SOCK on the
// user's own agent, the ssh-config block routing to warden), real ssh
// logs in with a warden certificate while warden runs and with the user's
// own key once warden is stopped, and the hint says where ssh falls back
// to. With SSH_AUTH_SOCK on warden's socket instead, the hint no longer
// promises a fallback that does not exist.
func TestE2EBreakGlass(t *testing.T) {
	needPrograms(t, "ssh", "ssh-agent", "ssh-add", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	up := startSSHAgent(t, e)
	own := keygen(t, filepath.Join(e.dir, "id_own"), "own-key")
	if r := e.sshAdd(up.socket, nil, filepath.Join(e.dir, "id_own")); r.code != 0 {
		t.Fatalf("ssh-add: %s", r)
	}
	a := startAgent(t, e, []string{"SSH_AUTH_SOCK=" + up.socket})
	if !strings.Contains(a.stdout.String(), "warden-agent ssh-config >> ~/.ssh/config") || strings.Contains(a.stdout.String(), "export SSH_AUTH_SOCK") {
		t.Errorf("the banner does not name the ssh-config step, or still suggests exporting SSH_AUTH_SOCK:\n%s", a.stdout)
	}
	s := startSSHD(t, a.ca, own)
	cfg := e.sshConfig(s, a.socket)
	userEnv := []string{"SSH_AUTH_SOCK=" + up.socket}

	e.mustLogin(cfg, userEnv, user, "target")
	if used := events(a.audit(t), "cert.used"); len(used) != 1 {
		t.Fatalf("with warden up the login did not use a warden certificate: %v", used)
	}

	a.stop(t)
	r := e.sshLogin(cfg, userEnv, user, "target", "break-glass")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "break-glass" {
		t.Fatalf("with warden stopped, ssh did not log in with the user's own key: %s", r)
	}
	if want := "not running on " + a.socket + "; ssh falls back to your usual agent (SSH_AUTH_SOCK=" + up.socket + ")"; !strings.Contains(r.stderr, want) {
		t.Errorf("hint with warden stopped lacks %q: %s", want, r.stderr)
	}
	if !waitFor(5*time.Second, func() bool {
		return strings.Contains(s.log.String(), "Accepted publickey for "+user) && strings.Contains(s.log.String(), fingerprint(t, own))
	}) {
		t.Errorf("sshd log does not show a login with the user's own key %s:\n%s", fingerprint(t, own), s.log)
	}

	// The set-up the quick start used to suggest: no agent at all.
	r = e.sshLogin(cfg, []string{"SSH_AUTH_SOCK=" + a.socket}, user, "target", "no-agent")
	if r.code == 0 {
		t.Fatalf("logged in with no agent at all: %s", r)
	}
	if strings.Contains(r.stderr, "falls back to your usual agent") || !strings.Contains(r.stderr, "SSH_AUTH_SOCK points at it too, so ssh has no agent") {
		t.Errorf("hint with SSH_AUTH_SOCK on the stopped warden: %s", r.stderr)
	}

	// env says so; the quick start no longer points SSH_AUTH_SOCK at warden.
	if r := e.warden("env"); !strings.Contains(r.stderr, "ssh has no agent while warden is down") {
		t.Errorf("env does not warn: %s", r)
	}
	if script := quickstartScript(t, quickstartDoc(t)); strings.Contains(script, `eval "$(warden-agent env)"`) {
		t.Errorf("the quick start still points SSH_AUTH_SOCK at warden:\n%s", script)
	}
}
