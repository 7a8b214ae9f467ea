package signer

import "golang.org/x/crypto/ssh"

// KeyFingerprint is the SHA256 fingerprint OpenSSH shows for a key: for a
// certificate, that of its public key, as in sshd's "Accepted publickey
// … ED25519-CERT SHA256:…" log line, `ssh-add -l` and `ssh-keygen -l`.
// x/crypto's FingerprintSHA256 hashes a certificate's whole blob, which
// matches nothing an operator can look up.
func KeyFingerprint(pub ssh.PublicKey) string {
	if c, ok := pub.(*ssh.Certificate); ok {
		return ssh.FingerprintSHA256(c.Key)
	}
	return ssh.FingerprintSHA256(pub)
}
