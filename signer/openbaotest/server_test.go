package openbaotest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// transcriptKey is the public key of shared/openbao/transcript-2.6.2.md.
const transcriptKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIADDcrSdaJJtFfXyRxScFmrhnLHDxJVaXgU1Glj3AdZx root@vm"

func call(t *testing.T, s *Server, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+"/v1/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestTranscript replays the requests of transcript-2.6.2.md and checks
// status codes and error bodies byte for byte.
func TestTranscript(t *testing.T) {
	s := NewServer(t, Options{})
	root := s.RootToken()
	pol := s.CreateToken([]string{"default", "warden-eng"}, 10*time.Minute, true)
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		want                            string
	}{
		{"principal", "POST", "ssh/sign/eng", root, `{"public_key":"` + transcriptKey + `","valid_principals":"mallory"}`, 400, `{"errors":["mallory is not a valid value for valid_principals"]}`},
		{"ttl", "POST", "ssh/sign/eng", root, `{"public_key":"` + transcriptKey + `","valid_principals":"alice","ttl":"48h"}`, 400, `{"errors":["ttl is larger than maximum allowed 3600"]}`},
		{"role", "POST", "ssh/sign/nope", root, `{"public_key":"` + transcriptKey + `","valid_principals":"alice"}`, 400, `{"errors":["Unknown role: nope"]}`},
		{"bad key", "POST", "ssh/sign/eng", root, `{"public_key":"ssh-ed25519 AAAAgarbage","valid_principals":"alice"}`, 400, `{"errors":["failed to parse public_key as SSH key: illegal base64 data at input byte 8"]}`},
		{"extension", "POST", "ssh/sign/eng", root, `{"public_key":"` + transcriptKey + `","valid_principals":"alice","extensions":{"permit-X11-forwarding":""}}`, 400, `{"errors":["extensions [permit-X11-forwarding] are not on allowed list"]}`},
		{"no token", "POST", "ssh/sign/eng", "", `{"public_key":"` + transcriptKey + `","valid_principals":"alice"}`, 403, `{"errors":["permission denied"]}`},
		{"bad token", "POST", "ssh/sign/eng", "s.bad", `{"public_key":"` + transcriptKey + `","valid_principals":"alice"}`, 403, `{"errors":["permission denied"]}`},
		{"other path", "POST", "ssh/sign/other", pol, `{"public_key":"` + transcriptKey + `"}`, 403, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`},
		{"approle bad secret", "POST", "auth/approle/login", "", `{"role_id":"x","secret_id":"y"}`, 400, `{"errors":["invalid role or secret ID"]}`},
	} {
		status, body := call(t, s, tc.method, tc.path, tc.token, tc.body)
		if status != tc.status || body != tc.want {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, body, tc.status, tc.want)
		}
	}

	// sign ok: the shape of data, the serial in hex, the back-date.
	status, body := call(t, s, "POST", "ssh/sign/eng", pol, `{"public_key":"`+transcriptKey+`","valid_principals":"alice","ttl":"1m"}`)
	if status != 200 {
		t.Fatalf("sign: %d %s", status, body)
	}
	var env struct {
		RequestID string `json:"request_id"`
		Data      struct {
			IssuerID, SerialNumber, SignedKey string
		} `json:"data"`
	}
	var raw map[string]any
	_ = json.Unmarshal([]byte(body), &raw)
	for _, k := range []string{"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("sign answer lacks %q", k)
		}
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatal(err)
	}
	d := raw["data"].(map[string]any)
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(d["signed_key"].(string)))
	if err != nil || !strings.HasSuffix(d["signed_key"].(string), "\n") {
		t.Fatalf("signed_key %q: %v", d["signed_key"], err)
	}
	cert := k.(*ssh.Certificate)
	if got := d["serial_number"].(string); got != strings.TrimLeft(strings.ToLower(hex16(cert.Serial)), "0") {
		t.Errorf("serial_number %s, cert serial %x", got, cert.Serial)
	}
	if ext := cert.Extensions; len(ext) != 1 || ext["permit-pty"] != "" {
		t.Errorf("extensions %v", ext)
	}
	if back := time.Now().Unix() - int64(cert.ValidAfter); back < 29 || back > 32 {
		t.Errorf("back-dated by %ds", back)
	}
	if want := "vault-token-"; !strings.HasPrefix(cert.KeyId, want) {
		t.Errorf("key id %q", cert.KeyId)
	}

	// No principal: default_user.
	_, body = call(t, s, "POST", "ssh/sign/eng", pol, `{"public_key":"`+transcriptKey+`"}`)
	_ = json.Unmarshal([]byte(body), &raw)
	k, _, _, _, _ = ssh.ParseAuthorizedKey([]byte(raw["data"].(map[string]any)["signed_key"].(string)))
	if p := k.(*ssh.Certificate).ValidPrincipals; len(p) != 1 || p[0] != "deploy" {
		t.Errorf("default principals %v", p)
	}

	// Public key and sealing.
	status, body = call(t, s, "GET", "ssh/public_key", "", "")
	if status != 200 || body != strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.CAPublicKey()))) {
		t.Errorf("public_key: %d %s", status, body)
	}
	s.Seal()
	if status, body = call(t, s, "POST", "ssh/sign/eng", root, `{}`); status != 503 || body != `{"errors":["Vault is sealed"]}` {
		t.Errorf("sealed sign: %d %s", status, body)
	}
	if status, body = call(t, s, "GET", "sys/health", "", ""); status != 503 || !strings.Contains(body, `"sealed":true`) {
		t.Errorf("sealed health: %d %s", status, body)
	}
}

func TestTokenLifecycle(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s := NewServer(t, Options{Now: clock})
	rid, sid := s.AppRole()
	status, body := call(t, s, "POST", "auth/approle/login", "", `{"role_id":"`+rid+`","secret_id":"`+sid+`"}`)
	if status != 200 || !strings.Contains(body, `"lease_duration":1200`) || !strings.Contains(body, `"role_name":"warden"`) {
		t.Fatalf("login: %d %s", status, body)
	}
	var env struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	_ = json.Unmarshal([]byte(body), &env)
	tok := env.Auth.ClientToken
	if status, body = call(t, s, "GET", "auth/token/lookup-self", tok, ""); status != 200 || !strings.Contains(body, `"ttl":1200`) {
		t.Fatalf("lookup: %d %s", status, body)
	}
	now = now.Add(15 * time.Minute)
	if status, body = call(t, s, "POST", "auth/token/renew-self", tok, `{"increment":"5m"}`); status != 200 || !strings.Contains(body, `"lease_duration":300`) {
		t.Fatalf("renew: %d %s", status, body)
	}
	now = now.Add(6 * time.Minute)
	if status, _ = call(t, s, "GET", "auth/token/lookup-self", tok, ""); status != 403 {
		t.Fatalf("expired token: %d", status)
	}
	s.AddJWTRole("tunnel", "eyJ.x.y", []string{"default"}, time.Minute)
	if status, _ = call(t, s, "POST", "auth/jwt/login", "", `{"role":"tunnel","jwt":"eyJ.x.y"}`); status != 200 {
		t.Fatalf("jwt login: %d", status)
	}
	if status, _ = call(t, s, "POST", "auth/jwt/login", "", `{"role":"tunnel","jwt":"other"}`); status != 400 {
		t.Fatalf("bad jwt: %d", status)
	}
}

func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b)
}
