package main

// TestOpenBaoDocServerSide runs the ```sh blocks of docs/openbao.md's
// "Server side" against a bare OpenBao-compatible test server, as
// TestQuickstartLocalCA runs quickstart.md's against the local CA. `bao`
// on PATH is this test binary (see init below), a small client that sends
// the requests the real bao CLI sends for the commands the doc uses; paths
// under /etc are moved into the test's directory. Then the agent logs in
// with what the doc set up: the token it creates, and the AppRole.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

func init() {
	if filepath.Base(os.Args[0]) == "bao" {
		os.Exit(fakeBao(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
}

// fakeBao is the subset of the bao CLI docs/openbao.md uses, speaking to
// BAO_ADDR with BAO_TOKEN.
func fakeBao(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "bao: "+format+"\n", a...)
		return 2
	}
	// Flags (-f, -field=X, -policy=X, -ttl=X, …) may come anywhere before
	// the positional arguments, as in the CLI.
	flags := map[string]string{}
	var pos []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") && a != "-" {
			k, v, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			flags[k] = v
			continue
		}
		pos = append(pos, a)
	}
	call := func(method, path string, body any) (map[string]any, int) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, os.Getenv("BAO_ADDR")+"/v1/"+path, rd)
		if err != nil {
			return nil, fail("%v", err)
		}
		req.Header.Set("X-Vault-Token", os.Getenv("BAO_TOKEN"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fail("%v", err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode >= 400 {
			return nil, fail("Error making API request.\n\nURL: %s %s\nCode: %d. Errors:\n\n%s", method, req.URL, resp.StatusCode, raw)
		}
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return out, 0
	}
	// kv reads k=v arguments, or a JSON object from stdin for "-".
	kv := func(items []string) (map[string]any, int) {
		m := map[string]any{}
		for _, it := range items {
			if it == "-" {
				if err := json.NewDecoder(stdin).Decode(&m); err != nil {
					return nil, fail("reading JSON from stdin: %v", err)
				}
				continue
			}
			k, v, ok := strings.Cut(it, "=")
			if !ok {
				return nil, fail("argument %q is not key=value", it)
			}
			switch v {
			case "true":
				m[k] = true
			case "false":
				m[k] = false
			default:
				m[k] = v
			}
		}
		return m, 0
	}
	// printField prints one field of data (or auth), without a newline,
	// as bao -field does.
	printField := func(out map[string]any, field string) int {
		for _, block := range []string{"data", "auth"} {
			if m, ok := out[block].(map[string]any); ok {
				if v, ok := m[field]; ok {
					fmt.Fprint(stdout, v)
					return 0
				}
				if field == "token" {
					if v, ok := m["client_token"]; ok {
						fmt.Fprint(stdout, v)
						return 0
					}
				}
			}
		}
		return fail("field %q not present in secret", field)
	}
	if len(pos) < 2 {
		return fail("unsupported command %q", strings.Join(args, " "))
	}
	switch cmd := pos[0] + " " + pos[1]; {
	case cmd == "secrets enable" && len(pos) == 3:
		if _, rc := call("POST", "sys/mounts/"+pos[2], map[string]any{"type": pos[2]}); rc != 0 {
			return rc
		}
		fmt.Fprintf(stdout, "Success! Enabled the %s secrets engine at: %s/\n", pos[2], pos[2])
	case cmd == "secrets tune" && len(pos) == 3:
		if _, rc := call("POST", "sys/mounts/"+pos[2]+"/tune", map[string]any{"audit_non_hmac_response_keys": []string{flags["audit-non-hmac-response-keys"]}}); rc != 0 {
			return rc
		}
		fmt.Fprintf(stdout, "Success! Tuned the secrets engine at: %s/\n", pos[2])
	case cmd == "auth enable" && len(pos) == 3:
		if _, rc := call("POST", "sys/auth/"+pos[2], map[string]any{"type": pos[2]}); rc != 0 {
			return rc
		}
		fmt.Fprintf(stdout, "Success! Enabled %s auth method at: %s/\n", pos[2], pos[2])
	case cmd == "policy write" && len(pos) == 4 && pos[3] == "-":
		hcl, _ := io.ReadAll(stdin)
		if _, rc := call("PUT", "sys/policies/acl/"+pos[2], map[string]any{"policy": string(hcl)}); rc != 0 {
			return rc
		}
		fmt.Fprintf(stdout, "Success! Uploaded policy: %s\n", pos[2])
	case cmd == "token create":
		body := map[string]any{"policies": strings.Split(flags["policy"], ","), "ttl": flags["ttl"], "explicit_max_ttl": flags["explicit-max-ttl"]}
		out, rc := call("POST", "auth/token/create", body)
		if rc != 0 {
			return rc
		}
		return printField(out, flags["field"])
	case pos[0] == "read" && len(pos) == 2:
		out, rc := call("GET", pos[1], nil)
		if rc != 0 {
			return rc
		}
		return printField(out, flags["field"])
	case pos[0] == "write":
		body, rc := kv(pos[2:])
		if rc != 0 {
			return rc
		}
		out, rc := call("POST", pos[1], body)
		if rc != 0 {
			return rc
		}
		if f := flags["field"]; f != "" {
			return printField(out, f)
		}
		fmt.Fprintf(stdout, "Success! Data written to: %s\n", pos[1])
	default:
		return fail("unsupported command %q", strings.Join(args, " "))
	}
	return 0
}

// openbaoServerSide returns the ```sh blocks of docs/openbao.md's "Server
// side" section, in order.
func openbaoServerSide(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "openbao.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "\n## Server side\n")
	section, _, ok2 := strings.Cut(rest, "\n## ")
	if !ok || !ok2 {
		t.Fatal("docs/openbao.md has no \"## Server side\" section")
	}
	var blocks []string
	var cur []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && strings.TrimSpace(line) == "```sh":
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

func TestOpenBaoDocServerSide(t *testing.T) {
	needPrograms(t, "bash")
	user := loginUser(t)
	srv := openbaotest.NewServer(t, openbaotest.Options{Bare: true})
	e := newTestEnv(t)
	bin := filepath.Join(e.dir, "bin")
	os.MkdirAll(bin, 0o755)
	if err := os.Link(wardenExe, filepath.Join(bin, "bao")); err != nil {
		if err := copyFile(wardenExe, filepath.Join(bin, "bao")); err != nil {
			t.Fatal(err)
		}
	}
	etc := filepath.Join(e.dir, "etc")
	os.MkdirAll(filepath.Join(etc, "ssh"), 0o755)
	os.MkdirAll(filepath.Join(etc, "warden"), 0o755)

	blocks := openbaoServerSide(t)
	if len(blocks) < 6 {
		t.Fatalf("docs/openbao.md's Server side has %d sh blocks", len(blocks))
	}
	var tokenOut string
	for i, b := range blocks {
		script := strings.ReplaceAll(b, "/etc/", etc+"/")
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Env = e.environ("PATH="+bin+":"+os.Getenv("PATH"), "BAO_ADDR="+srv.URL, "BAO_TOKEN="+srv.RootToken())
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("block %d of docs/openbao.md failed: %v\n%s\nstdout:\n%s\nstderr:\n%s", i+1, err, b, out.String(), errb.String())
		}
		if strings.Contains(b, "bao token create") {
			tokenOut = strings.TrimSpace(out.String())
		}
	}

	// What the doc set up is there.
	mounted, caReady, auths, headers, nonHMAC := srv.Admin()
	if !mounted || !caReady || !slices.Contains(auths, "approle") || !slices.Contains(auths, "jwt") ||
		!slices.Contains(headers, "X-Warden-Request") || !slices.Contains(headers, "X-Warden-Audit-Head") ||
		!slices.Equal(nonHMAC["ssh"], []string{"serial_number"}) {
		t.Errorf("after the doc: mounted %v, CA %v, auth %v, headers %v, non-HMAC keys %v", mounted, caReady, auths, headers, nonHMAC)
	}
	if got, _ := os.ReadFile(filepath.Join(etc, "ssh", "trusted-user-ca.pub")); strings.TrimSpace(string(got)) != strings.TrimSpace(string(marshalAuthorized(srv))) {
		t.Errorf("trusted-user-ca.pub holds %q", got)
	}
	if p := srv.PolicyOf("warden-eng"); !slices.Equal(p["ssh/roles/eng"], []string{"read"}) || !slices.Equal(p["ssh/sign/eng"], []string{"update"}) {
		t.Errorf("policy warden-eng: %v", p)
	}
	if r, ok := srv.RoleOf("eng"); !ok || !slices.Contains(r.AllowedUsers, "alice") || r.MaxTTL != time.Hour {
		t.Errorf("role eng: %+v", r)
	}

	// The agent signs with the token the doc creates, and with its AppRole.
	if !strings.HasPrefix(tokenOut, "s.") {
		t.Fatalf("bao token create printed %q", tokenOut)
	}
	srv.SetRole("eng", func() openbaotest.Role {
		r, _ := srv.RoleOf("eng")
		r.AllowedUsers = append(r.AllowedUsers, user)
		return r
	}())
	tg := srv.Target()
	routes := "routes:\n  - name: lab\n    hosts: [127.0.0.1]\n    mount: ssh\n    role: eng\n    principals: [" + user + "]\n"
	cfgTok := filepath.Join(e.dir, "token.yaml")
	os.WriteFile(cfgTok, []byte("signer:\n  kind: openbao\n  openbao:\n    address: "+tg.Address+"\n"+routes), 0o600)
	startAgent(t, e, []string{"BAO_TOKEN=" + tokenOut}, "--config", cfgTok, "--upstream", "none", "--socket", filepath.Join(e.dir, "tok.sock"))
	if r := e.warden("sign", "--config", cfgTok, "--socket", filepath.Join(e.dir, "tok.sock"), "--principal", user, "--host", "127.0.0.1"); r.code != 0 {
		t.Fatalf("sign with the doc's token: %s", r)
	}

	roleID := readField(t, srv, "auth/approle/role/warden/role-id", "role_id")
	cfgApp := filepath.Join(e.dir, "approle.yaml")
	os.WriteFile(cfgApp, []byte("signer:\n  kind: openbao\n  openbao:\n    address: "+tg.Address+"\n    approle:\n      role_id: "+roleID+
		"\n      secret_id_file: "+filepath.Join(etc, "warden", "secret-id")+"\n"+routes), 0o600)
	startAgent(t, e, nil, "--config", cfgApp, "--upstream", "none", "--socket", filepath.Join(e.dir, "app.sock"))
	if r := e.warden("sign", "--config", cfgApp, "--socket", filepath.Join(e.dir, "app.sock"), "--principal", user, "--host", "127.0.0.1"); r.code != 0 {
		t.Fatalf("sign with the doc's AppRole: %s", r)
	}
}

func marshalAuthorized(srv *openbaotest.Server) []byte {
	return ssh.MarshalAuthorizedKey(srv.CAPublicKey())
}

// readField reads one data field with the root token.
func readField(t *testing.T, srv *openbaotest.Server, path, field string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/"+path, nil)
	req.Header.Set("X-Vault-Token", srv.RootToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Data map[string]any }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	v, _ := out.Data[field].(string)
	return v
}
