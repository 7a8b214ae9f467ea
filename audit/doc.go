// Package audit is warden's tamper-evident local record: an append-only,
// hash-chained JSON Lines log with group-committed fsync, fail-closed
// writes, size rotation and crash recovery, plus the readers behind
// `warden-agent activity` (Verify, Query, Show, Follow).
//
// Each record carries seq, time, event, the event's fields, prev and hash,
// where hash is SHA-256 over prev and the record's canonical encoding
// without hash, so an edit, deletion, insertion or reordering breaks the
// chain at a known seq. docs/audit.md defines the format (version 1) so that
// it can be re-verified with jq and sha256sum alone.
//
// The package knows nothing about secrets: callers must never put a
// private key, a token or a secret id in a record's fields.
package audit
