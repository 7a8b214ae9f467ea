package signer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// signResponse is what <mount>/sign/<role> answered.
type signResponse struct {
	requestID string
	issuerID  string
	serial    uint64
	cert      *ssh.Certificate
}

// parseSignResponse parses the JSON body of a 200 from <mount>/sign/<role>:
// data.signed_key is an authorized_keys line, data.serial_number the hex
// serial, which must be the certificate's own (sshd logs the serial, and our
// audit links issuance and use by it).
func parseSignResponse(body []byte) (*signResponse, error) {
	if len(body) > maxResponseBody {
		return nil, errBodyTooLarge
	}
	var env struct {
		RequestID string `json:"request_id"`
		Data      *struct {
			IssuerID     string `json:"issuer_id"`
			SerialNumber string `json:"serial_number"`
			SignedKey    string `json:"signed_key"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("not a sign response: %w", err)
	}
	if env.Data == nil || env.Data.SignedKey == "" {
		return nil, errors.New("no data.signed_key in the answer")
	}
	serial, err := parseSerial(env.Data.SerialNumber)
	if err != nil {
		return nil, err
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(env.Data.SignedKey))
	if err != nil {
		return nil, fmt.Errorf("%w: signed_key: %v", ErrInvalidCertificate, err)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("%w: signed_key holds more than one key", ErrInvalidCertificate)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%w: signed_key is a %s key, not a certificate", ErrInvalidCertificate, pub.Type())
	}
	if cert.Serial != serial {
		return nil, fmt.Errorf("%w: serial_number %x differs from the certificate's serial %x", ErrInvalidCertificate, serial, cert.Serial)
	}
	return &signResponse{requestID: env.RequestID, issuerID: env.Data.IssuerID, serial: serial, cert: cert}, nil
}

// parseSerial reads OpenBao's hex serial ("2b0fc3cc8a134591"); older
// servers wrote it colon-separated.
func parseSerial(s string) (uint64, error) {
	h := strings.ReplaceAll(s, ":", "")
	if h == "" || len(h) > 16 {
		return 0, fmt.Errorf("%w: serial_number %q is not a 64-bit hex number", ErrInvalidCertificate, s)
	}
	v, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: serial_number %q is not a 64-bit hex number", ErrInvalidCertificate, s)
	}
	return v, nil
}

// parseCAKey reads the plain-text body of <mount>/public_key.
func parseCAKey(body []byte) (ssh.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey(body)
	if err != nil {
		return nil, fmt.Errorf("not an SSH public key: %w", err)
	}
	if _, ok := k.(*ssh.Certificate); ok {
		return nil, errors.New("a certificate, not a CA key")
	}
	return k, nil
}

// maxTokenTTLSeconds bounds TTLs so that converting them to a
// time.Duration cannot overflow (about 100 years).
const maxTokenTTLSeconds = 100 * 365 * 24 * 3600

// authInfo is the token part of a login, renew or lookup answer.
type authInfo struct {
	token       string
	ttl         time.Duration
	creationTTL time.Duration
	renewable   bool
	policies    []string
}

// parseAuth reads the "auth" block of a login or renew-self answer.
func parseAuth(body []byte) (*authInfo, error) {
	var env struct {
		Auth *struct {
			ClientToken   string   `json:"client_token"`
			Policies      []string `json:"policies"`
			LeaseDuration int64    `json:"lease_duration"`
			Renewable     bool     `json:"renewable"`
		} `json:"auth"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("not a login answer: %w", err)
	}
	if env.Auth == nil {
		return nil, errors.New("no auth block in the answer")
	}
	if env.Auth.LeaseDuration < 0 || env.Auth.LeaseDuration > maxTokenTTLSeconds {
		return nil, fmt.Errorf("lease_duration %d out of range", env.Auth.LeaseDuration)
	}
	ttl := time.Duration(env.Auth.LeaseDuration) * time.Second
	return &authInfo{token: env.Auth.ClientToken, ttl: ttl, creationTTL: ttl, renewable: env.Auth.Renewable, policies: env.Auth.Policies}, nil
}

// parseLookup reads the "data" block of auth/token/lookup-self.
func parseLookup(body []byte) (*authInfo, error) {
	var env struct {
		Data *struct {
			TTL         int64    `json:"ttl"`
			CreationTTL int64    `json:"creation_ttl"`
			Renewable   bool     `json:"renewable"`
			Policies    []string `json:"policies"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("not a lookup-self answer: %w", err)
	}
	if env.Data == nil {
		return nil, errors.New("no data in the lookup-self answer")
	}
	if env.Data.TTL < 0 || env.Data.CreationTTL < 0 || env.Data.TTL > maxTokenTTLSeconds || env.Data.CreationTTL > maxTokenTTLSeconds {
		return nil, fmt.Errorf("ttl %d out of range", env.Data.TTL)
	}
	return &authInfo{
		ttl:         time.Duration(env.Data.TTL) * time.Second,
		creationTTL: time.Duration(env.Data.CreationTTL) * time.Second,
		renewable:   env.Data.Renewable,
		policies:    env.Data.Policies,
	}, nil
}
