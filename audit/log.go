package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is wrapped by every error that means a record could not be
// made durable: the caller must refuse the operation the record describes
// (fail closed, as OpenBao's audit devices do).
var ErrUnavailable = errors.New("audit log unavailable")

// Defaults for Options.
const (
	DefaultMaxSize = 64 << 20
	DefaultKeep    = 5
	DefaultMinAge  = 7 * 24 * time.Hour
)

// maxBatch bounds how many queued records one write+fsync carries, so one
// commit never builds an unbounded buffer.
const maxBatch = 1024

// Options configures Open.
type Options struct {
	// Path of the current log file, e.g. $XDG_STATE_HOME/warden/audit.log.
	// Its directory is created 0700 and the file 0600.
	Path string
	// MaxSize is the size past which the file is rotated; DefaultMaxSize
	// when zero.
	MaxSize int64
	// Keep is how many rotated files (Path.1 … Path.Keep) are kept;
	// DefaultKeep when zero.
	Keep int
	// MinAge is how old a rotated file's newest record must be before
	// rotation may delete the file; DefaultMinAge when zero, no minimum
	// when negative. A rotation that would delete a younger file is
	// refused: the current file grows past MaxSize and Status says so,
	// so that a burst of records can never push the oldest ones (the
	// agent.start of the chain) out unnoticed.
	MinAge time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives warnings about recovery and failures; discarded when nil.
	Logger *slog.Logger

	// openFile opens Path for appending. Tests replace it to inject write
	// and fsync failures; nil means os.OpenFile.
	openFile func(path string) (logFile, error)
	// syncDelay is bestEffortSyncDelay unless a test sets it.
	syncDelay time.Duration
}

// logFile is the part of *os.File the writer uses.
type logFile interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Close() error
}

func openAppend(path string) (logFile, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

// Status is a snapshot of the log's state for `warden-agent status`.
type Status struct {
	Path string
	Size int64  // bytes in the current file
	Seq  uint64 // seq of the last durable record
	Head string // hash of the last durable record
	// Unavailable is true while the most recent attempt to write failed:
	// records are being refused.
	Unavailable bool
	// LastError is the most recent write failure, kept after recovery so a
	// past outage stays visible; "" if there was none.
	LastError   string
	LastErrorAt time.Time
	Rotated     int // rotated files currently kept (Path.1 …)
	// RotationRefused says why the last rotation was refused (it would
	// have deleted a file younger than MinAge) while the current file
	// grows past MaxSize instead; "" while rotation works.
	RotationRefused string
}

// Log is an append-only, hash-chained JSON-lines audit log.
//
// Concurrency: Append, Head, Status, Reopen and Close may be called from any
// goroutine. One writer goroutine, started by Open and stopped by Close,
// writes for callers: Append queues a request on a channel and waits; the
// writer takes every queued request, assigns seq/prev/hash, writes them with
// one write, fsyncs once and then answers all of them (group commit).
// Callers keep queueing while a batch is being synced. A caller that finds
// nobody writing and nothing queued writes its own record instead (wait's
// fast path); the right to write (wsem) makes the two take turns.
type Log struct {
	opts Options
	log  *slog.Logger

	reqs      chan *request
	reopenReq chan chan error
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the writer goroutine has returned
	closeOnce sync.Once
	closeErr  error
	laterMu   sync.RWMutex // AppendLater holds it to queue; Close to drain
	// wsem is the right to write: whoever holds it (the writer goroutine,
	// or a caller on the fast path of wait) owns the fields below.
	wsem chan struct{}

	// fsyncs and writes count fsyncs and writes of the log file; tests
	// use them to show batching.
	fsyncs atomic.Int64
	writes atomic.Int64
	// unsynced is set while records written for AppendLater alone wait
	// for their fsync (bestEffortSyncDelay). Atomic: the writer goroutine
	// reads it between batches while a caller may be writing.
	unsynced atomic.Bool
	// laterPending counts AppendLater records queued and not yet answered
	// (the writer may hold them for bestEffortWriteDelay). While there are
	// any, a waiter queues behind them instead of writing alone, so they
	// are written first, in the order they came, and synced with it.
	laterPending atomic.Int64

	// Owned by the holder of wsem (by Open before it starts the writer).
	f         logFile
	openInfo  os.FileInfo // f's identity, taken when it was opened
	size      int64
	seq       uint64
	head      string
	recovered map[string]any // fields of an audit.recovered record not yet written
	// rotateAfter is when a refused rotation may be tried again: when the
	// youngest file it would delete reaches MinAge.
	rotateAfter time.Time

	mu sync.Mutex // guards st
	st Status

	lock *Lock // on Path+lockSuffix, held from Open to Close
}

// lockSuffix names the writer's lock file next to the log
// (audit.log.lock); Files never counts it as part of the chain.
const lockSuffix = ".lock"

type request struct {
	ctx    context.Context
	event  string
	fields map[string]any
	pre    *Fields     // instead of fields, from AppendFields and AppendLater
	done   chan result // buffered, written once by the writer; nil for AppendLater
	// later is called by the writer with the outcome of an AppendLater.
	later func(error)
}

// answer reports a request's outcome to whoever waits for it.
func (req *request) answer(res result) {
	if req.later != nil {
		req.later(res.err)
		return
	}
	req.done <- res
}

type result struct {
	rec Record
	err error
}

// Open opens the log at opts.Path, creating it if needed, and finds the
// last record (in the current file, or the newest rotated one if the
// current file is empty) so that the chain continues across restarts. A
// torn last line left by a crash is moved to Path.torn-<unix time> and an
// audit.recovered record is appended. Open fails, with an error wrapping
// ErrUnavailable, if the file cannot be opened or its last record read.
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, errors.New("audit: no log path")
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if opts.MinAge == 0 {
		opts.MinAge = DefaultMinAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.syncDelay <= 0 {
		opts.syncDelay = bestEffortSyncDelay
	}
	if opts.openFile == nil {
		opts.openFile = openAppend
	}
	opts.Path = filepath.Clean(opts.Path)
	l := &Log{
		opts:      opts,
		log:       opts.Logger.With("audit_log", opts.Path),
		reqs:      make(chan *request, maxBatch),
		reopenReq: make(chan chan error),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		wsem:      make(chan struct{}, 1),
		st:        Status{Path: opts.Path},
	}
	// One writer per log: a second one would interleave records with the
	// same seq and break the chain. Readers take no lock.
	lock, err := LockFile(opts.Path + lockSuffix)
	var held *LockedError
	if errors.As(err, &held) {
		who := "another process"
		if held.PID > 0 {
			who = fmt.Sprintf("process %d", held.PID)
		}
		return nil, fmt.Errorf("audit: %s is already writing %s (it holds %s); a second writer would break the chain: stop it, or give this one another audit.path: %w", who, opts.Path, held.Path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w: %w", ErrUnavailable, err)
	}
	l.lock = lock
	if err := l.openFile(true); err != nil {
		lock.Unlock()
		return nil, err
	}
	if l.recovered != nil {
		if _, err := l.commit(nil); err != nil {
			l.closeFile()
			lock.Unlock()
			return nil, err
		}
	}
	l.publish(nil)
	go l.run()
	return l, nil
}

// Append writes one record and returns only once it is durable (written
// and fsynced). Concurrent callers share one fsync. fields are the event's
// fields; their names may not be one of the reserved v, seq, time, event,
// prev, hash, numbers must be integers within ±2^53 (pass larger ones, like
// a decimal certificate serial, as strings), and the whole record must fit
// in MaxRecordSize. Callers must never pass a private key, a token or a
// secret id: the log is readable by anyone who can read the user's files.
//
// If the record cannot be made durable (disk full, file removed, directory
// unwritable) the error wraps ErrUnavailable; the failure is kept for
// Status and the next Append tries again, reopening the file, so writing
// resumes with the chain intact once the cause is gone. ctx bounds the
// wait; a record whose caller gave up may still be written.
func (l *Log) Append(ctx context.Context, event string, fields map[string]any) (Record, error) {
	if event == "" || len(event) > maxEventLen {
		return Record{}, fmt.Errorf("audit: event name %q must be 1 to %d bytes", event, maxEventLen)
	}
	nf, err := normalizeFields(fields)
	if err != nil {
		return Record{}, err
	}
	return l.wait(ctx, &request{ctx: ctx, event: event, fields: nf, done: make(chan result, 1)})
}

// AppendFields is Append for fields built as Fields, for the events written
// on every signature: no map, no reflection, one encoding. The record is
// the same, byte for byte, as Append writes for the same fields. The
// returned Record has no Fields (Raw holds the line).
func (l *Log) AppendFields(ctx context.Context, event string, f *Fields) (Record, error) {
	if err := checkFields(event, f); err != nil {
		return Record{}, err
	}
	return l.wait(ctx, &request{ctx: ctx, event: event, pre: f, done: make(chan result, 1)})
}

// AppendLater queues a record and returns at once, for best-effort
// records that must stay off a reply path. The writer writes it with the
// next batch someone waits for, or with the best-effort records that came
// within bestEffortWriteDelay of it, and then calls done, on the writer's goroutine, with nil
// once it is written or with the error that kept it from being written;
// done must not block. It is fsynced with that batch when someone waits
// for another record of it, else within bestEffortSyncDelay. AppendLater never
// waits: it returns false, without calling done, when the record was not
// queued (the queue is full because the writer is stuck, or the log is
// closed), and the caller decides whether to wait with AppendFields.
func (l *Log) AppendLater(event string, f *Fields, done func(error)) bool {
	if done == nil {
		done = func(error) {}
	}
	if err := checkFields(event, f); err != nil {
		done(err)
		return true
	}
	// Counted from before it is queued until it is answered (wait).
	req := &request{ctx: context.Background(), event: event, pre: f, later: func(err error) {
		l.laterPending.Add(-1)
		done(err)
	}}
	// Under the read lock, so that Close cannot miss a request queued
	// while it drains: every queued request is answered.
	l.laterMu.RLock()
	defer l.laterMu.RUnlock()
	select {
	case <-l.stop:
		return false
	default:
	}
	l.laterPending.Add(1)
	select {
	case l.reqs <- req:
		return true
	default:
		l.laterPending.Add(-1)
		return false
	}
}

func checkFields(event string, f *Fields) error {
	if event == "" || len(event) > maxEventLen {
		return fmt.Errorf("audit: event name %q must be 1 to %d bytes", event, maxEventLen)
	}
	if f == nil {
		return errors.New("audit: nil Fields")
	}
	return f.err
}

// wait writes req itself when nobody is writing and nothing is queued
// (the fast path: no hand-off to the writer goroutine and back, which was
// a third of a signature's cost); else it queues req and waits for the
// writer's answer. On the fast path the caller waits for its own write
// and fsync, ctx or not: on a hung disk that one request hangs with it,
// while every other caller still gets its refusal at its deadline.
func (l *Log) wait(ctx context.Context, req *request) (Record, error) {
	select {
	case l.wsem <- struct{}{}:
		// Not while the writer holds best-effort records: they are written
		// with (and before) the next record someone waits for.
		if len(l.reqs) == 0 && l.laterPending.Load() == 0 {
			select {
			case <-l.stop:
			default:
				l.commit([]*request{req})
				<-l.wsem
				res := <-req.done
				return res.rec, res.err
			}
		}
		<-l.wsem
	default:
	}
	select {
	case l.reqs <- req:
	case <-l.stop:
		return Record{}, errClosed
	case <-ctx.Done():
		return Record{}, fmt.Errorf("audit: %w: %w", ErrUnavailable, ctx.Err())
	}
	select {
	case res := <-req.done:
		return res.rec, res.err
	case <-ctx.Done():
		return Record{}, fmt.Errorf("audit: %w: %w", ErrUnavailable, ctx.Err())
	case <-l.done:
		// The writer answers everything it took before returning.
		select {
		case res := <-req.done:
			return res.rec, res.err
		default:
			return Record{}, errClosed
		}
	}
}

var errClosed = fmt.Errorf("audit: log closed: %w", ErrUnavailable)

// Head returns the seq and hash of the last durable record (0 and ZeroHash
// for an empty log). It is what OpenBao requests carry as
// X-Warden-Audit-Head.
func (l *Log) Head() (seq uint64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Seq, l.st.Head
}

// Status returns a snapshot of the log's state.
func (l *Log) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st
}

// Reopen closes and reopens the file at Path, for SIGHUP after log shipping
// moved it away. The chain continues from the last durable record.
func (l *Log) Reopen() error {
	reply := make(chan error, 1)
	select {
	case l.reopenReq <- reply:
	case <-l.stop:
		return errClosed
	}
	return <-reply
}

// Close stops the writer goroutine and closes the file. Queued records not
// yet written are refused. Close is idempotent.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.laterMu.Lock()
		close(l.stop)
		l.laterMu.Unlock()
		<-l.done
	})
	return l.closeErr
}

// run is the writer goroutine.
func (l *Log) run() {
	defer close(l.done)
	batch := make([]*request, 0, maxBatch)
	// syncC fires bestEffortSyncDelay after records were written without
	// an fsync, unless a batch that syncs comes first.
	var syncC <-chan time.Time
	// held are AppendLater records waiting up to bestEffortWriteDelay for
	// company, so that a stream of them (one per proxied signature) costs
	// one write per interval instead of one each; laterC ends the wait.
	held := make([]*request, 0, maxBatch)
	var laterC <-chan time.Time
	writeHeld := func() {
		if len(held) > 0 {
			l.wsem <- struct{}{}
			l.commit(held)
			<-l.wsem
			clear(held)
			held = held[:0]
		}
		laterC = nil
	}
	for {
		if !l.unsynced.Load() {
			syncC = nil
		} else if syncC == nil {
			syncC = time.After(l.opts.syncDelay)
		}
		select {
		case <-syncC:
			syncC = nil
			l.wsem <- struct{}{}
			l.syncPending()
			<-l.wsem
		case <-laterC:
			writeHeld()
		case <-l.stop:
			writeHeld()
			// Wait out a caller writing on the fast path, then keep the
			// right to write: nobody writes after Close.
			l.wsem <- struct{}{}
			for {
				select {
				case req := <-l.reqs:
					req.answer(result{err: errClosed})
				default:
					l.closeErr = l.closeFile()
					l.lock.Unlock()
					return
				}
			}
		case reply := <-l.reopenReq:
			writeHeld()
			l.wsem <- struct{}{}
			err := l.reopen()
			<-l.wsem
			reply <- err
		case req := <-l.reqs:
			batch = append(batch[:0], req)
			// Everything queued while the previous batch was syncing
			// shares this batch's fsync.
		more:
			for len(batch) < maxBatch {
				select {
				case req := <-l.reqs:
					batch = append(batch, req)
				default:
					break more
				}
			}
			if onlyLater(batch) && len(held)+len(batch) <= maxBatch {
				held = append(held, batch...)
				if laterC == nil {
					laterC = time.After(min(bestEffortWriteDelay, l.opts.syncDelay))
				}
				clear(batch)
				continue
			}
			if len(held) > 0 { // held records go first, in the order they came
				held = append(held, batch...)
				clear(batch)
				batch, held = held, batch[:0] // swap the two arrays
				laterC = nil
			}
			l.wsem <- struct{}{}
			l.commit(batch)
			<-l.wsem
			clear(batch) // drop references to answered requests
		}
	}
}

func (l *Log) reopen() error {
	l.closeFile()
	err := l.openFile(false)
	if err == nil && l.recovered != nil {
		_, err = l.commit(nil)
	}
	l.publish(err)
	return err
}

// commit sequences, writes and syncs the records of batch (plus a pending
// audit.recovered record) and answers each request. It returns the error
// of the write, if any.
func (l *Log) commit(batch []*request) (int, error) {
	if err := l.ensureOpen(); err != nil {
		err = l.unavailable(err)
		l.publish(err)
		for _, req := range batch {
			req.answer(result{err: err})
		}
		return 0, err
	}

	type pending struct {
		rec Record
		req *request // nil for the recovered record
	}
	recs := make([]pending, 0, len(batch)+1)
	seq, prev := l.seq, l.head
	add := func(event string, fields map[string]any, req *request) {
		rec := Record{V: FormatVersion, Seq: seq + 1, Time: l.opts.Now().UTC(), Event: event, Fields: fields, Prev: prev}
		var err error
		if req != nil && req.pre != nil {
			err = encodeFieldsRecord(&rec, req.pre)
		} else {
			err = encodeRecord(&rec)
		}
		if err != nil {
			if req != nil {
				req.answer(result{err: err})
			}
			return
		}
		seq, prev = rec.Seq, rec.Hash
		recs = append(recs, pending{rec, req})
	}
	if l.recovered != nil {
		add(EventRecovered, l.recovered, nil)
	}
	for _, req := range batch {
		if err := req.ctx.Err(); err != nil {
			// The caller is gone; do not write a record nobody waits for.
			req.answer(result{err: fmt.Errorf("audit: %w: %w", ErrUnavailable, err)})
			continue
		}
		add(req.event, req.fields, req)
	}

	// A batch of AppendLater records alone is written now and synced
	// with the next batch that has a waiter, or after
	// bestEffortSyncDelay: nobody waits for them, and an fsync per
	// record is most of what they cost.
	sync := false
	for _, p := range recs {
		sync = sync || p.req == nil || p.req.later == nil
	}

	// Write in chunks, rotating between them when the file would grow past
	// MaxSize. durable counts the records written (and, when sync, on
	// disk).
	var (
		buf     []byte
		durable int
		err     error
	)
	for i, p := range recs {
		line := len(p.rec.Raw) + 1
		if l.size+int64(len(buf)+line) > l.opts.MaxSize && l.size+int64(len(buf)) > 0 && l.mayRotate() {
			if len(buf) > 0 {
				if err = l.flush(buf, true); err != nil {
					break
				}
				durable, buf = i, buf[:0]
			}
			if err = l.rotate(); err != nil {
				break
			}
		}
		buf = append(buf, p.rec.Raw...)
		buf = append(buf, '\n')
	}
	if err == nil && len(buf) > 0 {
		if err = l.flush(buf, sync); err == nil {
			durable = len(recs)
		}
	}

	if durable > 0 {
		last := recs[durable-1].rec
		l.seq, l.head = last.Seq, last.Hash
		if recs[0].req == nil {
			l.recovered = nil
		}
	}
	if err != nil {
		err = l.unavailable(err)
	}
	// Publish before answering: a caller that sees its record durable must
	// see it in Head and Status too (the agent sends Head to OpenBao next).
	l.publish(err)
	for i, p := range recs {
		if p.req == nil {
			continue
		}
		if i < durable {
			p.req.answer(result{rec: p.rec})
		} else {
			p.req.answer(result{err: err})
		}
	}
	return durable, err
}

// unavailable wraps a write failure for callers and logs it.
func (l *Log) unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	l.log.Warn("audit log unavailable; refusing records", "err", err)
	return fmt.Errorf("audit: %w: %w", ErrUnavailable, err)
}

// publish updates the status snapshot after an attempt to write.
func (l *Log) publish(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st.Size, l.st.Seq, l.st.Head = l.size, l.seq, l.head
	if l.head == "" {
		l.st.Head = ZeroHash
	}
	l.st.Unavailable = err != nil
	if err != nil {
		l.st.LastError = err.Error()
		l.st.LastErrorAt = l.opts.Now().UTC()
	}
}

// flush writes buf and, when sync, fsyncs it (with anything written
// unsynced before). On failure it takes back whatever part of
// buf reached the file, so the chain on disk ends at the last durable
// record; if even that fails, or fsync failed (after which the kernel's
// page cache can no longer be trusted), the file is closed and the next
// attempt reopens it, treating a partial line as torn.
func (l *Log) flush(buf []byte, sync bool) error {
	l.writes.Add(1)
	n, err := l.f.Write(buf)
	if err != nil {
		if n > 0 {
			if terr := l.f.Truncate(l.size); terr != nil {
				l.log.Warn("cannot take back a partial write; reopening", "err", terr)
				l.closeFile()
			}
		}
		return err
	}
	if !sync {
		l.size += int64(n)
		l.unsynced.Store(true)
		return nil
	}
	l.fsyncs.Add(1)
	if err := l.f.Sync(); err != nil {
		l.f.Truncate(l.size)
		l.closeFile()
		return fmt.Errorf("fsync %s: %w", l.opts.Path, err)
	}
	l.size += int64(n)
	l.unsynced.Store(false)
	return nil
}

// bestEffortWriteDelay bounds how long AppendLater records wait for
// others to be written with (bestEffortSyncDelay when that is shorter).
const bestEffortWriteDelay = 10 * time.Millisecond

func onlyLater(batch []*request) bool {
	for _, r := range batch {
		if r.later == nil {
			return false
		}
	}
	return true
}

// bestEffortSyncDelay bounds how long records written for AppendLater
// alone wait for their fsync.
const bestEffortSyncDelay = 100 * time.Millisecond

// syncPending fsyncs records written without one. A failed fsync leaves
// the page cache untrustworthy: the file is closed, and the next batch
// reopens it and recovers its tail, as after a failed flush.
func (l *Log) syncPending() {
	if l.f == nil || !l.unsynced.Swap(false) {
		return
	}
	l.fsyncs.Add(1)
	if err := l.f.Sync(); err != nil {
		l.closeFile()
		l.publish(l.unavailable(fmt.Errorf("fsync %s: %w", l.opts.Path, err)))
	}
}

// ensureOpen makes sure the writer holds the file at Path. A file removed
// or replaced under us (rm, a directory swapped, log shipping without
// SIGHUP) would swallow records into an unlinked inode, so every batch
// checks that the open file is still the one at Path.
func (l *Log) ensureOpen() error {
	if l.f != nil {
		// The open file's identity never changes, so it was taken once at
		// open: one stat of the path per batch.
		fi, err := os.Stat(l.opts.Path)
		if err == nil && os.SameFile(fi, l.openInfo) {
			return nil
		}
		l.log.Warn("audit log file moved or removed; reopening", "err", err)
		l.closeFile()
	}
	return l.openFile(false)
}

func (l *Log) closeFile() error {
	if l.f == nil {
		return nil
	}
	if l.unsynced.Swap(false) {
		l.fsyncs.Add(1)
		l.f.Sync() // best effort: nobody waits for these records
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// openFile opens Path for appending after recovering its tail. At start
// (initial) the chain head comes from the file, or from the newest rotated
// file when the current one is empty; on a later reopen the head in memory
// is kept unless the file holds later records.
func (l *Log) openFile(initial bool) error {
	path := l.opts.Path
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return l.unavailable(err)
	}
	t, err := l.recoverTail(path)
	if err != nil {
		return l.unavailable(err)
	}
	switch {
	case t.last != nil && (initial || t.last.Seq > l.seq):
		if !initial {
			l.log.Warn("audit log holds records past the head in memory; continuing from the file", "seq", t.last.Seq, "head_seq", l.seq)
		}
		l.seq, l.head = t.last.Seq, t.last.Hash
	case t.last != nil && (t.last.Seq != l.seq || t.last.Hash != l.head):
		l.log.Warn("audit log file does not end at the head in memory; continuing the chain from memory", "file_seq", t.last.Seq, "head_seq", l.seq)
	case t.last == nil && initial:
		l.seq, l.head = 0, ZeroHash
		rotated, err := rotatedFiles(path)
		if err != nil {
			return l.unavailable(err)
		}
		if len(rotated) > 0 {
			prev := rotated[len(rotated)-1] // the newest
			pt, err := readTail(prev)
			if err != nil {
				return l.unavailable(err)
			}
			if pt.last == nil || pt.tornFrom >= 0 {
				return l.unavailable(fmt.Errorf("%s does not end with a readable record; run `warden-agent activity verify`", prev))
			}
			l.seq, l.head = pt.last.Seq, pt.last.Hash
		}
	}
	f, err := l.opts.openFile(path)
	if err != nil {
		return l.unavailable(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return l.unavailable(err)
	}
	syncDir(filepath.Dir(path))
	l.f, l.size, l.openInfo = f, fi.Size(), fi
	l.countRotated()
	return nil
}

func (l *Log) countRotated() {
	rotated, _ := rotatedFiles(l.opts.Path)
	l.mu.Lock()
	l.st.Rotated = len(rotated)
	l.mu.Unlock()
}

// tail describes the end of a log file.
type tail struct {
	last     *Record // last readable record, nil if none
	size     int64
	tornFrom int64 // offset of a torn last line, -1 if none
}

// readTail reads the end of path without changing it. A missing file is an
// empty one.
func readTail(path string) (tail, error) {
	t := tail{tornFrom: -1}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return t, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return t, err
	}
	t.size = fi.Size()
	if t.size == 0 {
		return t, nil
	}
	// Find the last newline, scanning back in chunks so a huge unterminated
	// tail costs no memory.
	end := t.size // end of the complete lines
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, t.size-1); err != nil {
		return t, err
	}
	if b[0] != '\n' {
		nl, err := lastIndexByte(f, t.size, '\n')
		if err != nil {
			return t, err
		}
		end = nl + 1 // 0 when there is no newline at all
		t.tornFrom = end
	}
	cut := false // whether one complete but unreadable line was cut already
	for end > 0 {
		// The line ending at end-1 ('\n').
		nl, err := lastIndexByte(f, end-1, '\n')
		if err != nil {
			return t, err
		}
		start := nl + 1
		if end-1-start > MaxRecordSize {
			if !cut {
				t.tornFrom, end, cut = start, start, true
				continue
			}
			return t, fmt.Errorf("last record of %s at offset %d is longer than %d bytes", path, start, MaxRecordSize)
		}
		line := make([]byte, end-1-start)
		if _, err := f.ReadAt(line, start); err != nil {
			return t, err
		}
		rec, err := ParseRecord(line)
		if !wholeRecord(err) {
			// A crash leaves an unterminated fragment; treat one unreadable
			// last line the same way, but no more than one line.
			if !cut {
				t.tornFrom, end, cut = start, start, true
				continue
			}
			return t, fmt.Errorf("last record of %s at offset %d is unreadable: %v; run `warden-agent activity verify`", path, start, err)
		}
		// A well-formed record whose hash does not match is an edit, not a
		// crash: keep it (Verify will report it) and chain on from it.
		t.last = &rec
		break
	}
	return t, nil
}

// lastIndexByte returns the offset of the last c in f before offset end,
// or -1.
func lastIndexByte(f *os.File, end int64, c byte) (int64, error) {
	buf := make([]byte, 32<<10)
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] == c {
				return end - n + i, nil
			}
		}
		end -= n
	}
	return -1, nil
}

// recoverTail reads the tail of path and, if the last line is torn, copies
// it to path.torn-<unix time>, cuts it off and arranges for an
// audit.recovered record.
func (l *Log) recoverTail(path string) (tail, error) {
	t, err := readTail(path)
	if err != nil || t.tornFrom < 0 {
		return t, err
	}
	torn := t.size - t.tornFrom
	kept, err := keepAside(path, t.tornFrom, l.opts.Now())
	if err != nil {
		return t, fmt.Errorf("keeping torn tail of %s aside: %w", path, err)
	}
	if err := os.Truncate(path, t.tornFrom); err != nil {
		return t, fmt.Errorf("cutting torn tail of %s: %w", path, err)
	}
	l.log.Warn("audit log had a torn last line; kept aside", "torn_bytes", torn, "kept_in", kept)
	l.recovered = map[string]any{
		"torn_bytes": json.Number(strconv.FormatInt(torn, 10)),
		"kept_in":    kept,
	}
	t.size, t.tornFrom = t.tornFrom, -1
	return t, nil
}

// keepAside copies path from offset off to a new file path.torn-<unix>,
// fsynced, and returns its name.
func keepAside(path string, off int64, now time.Time) (string, error) {
	src, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	base := path + ".torn-" + strconv.FormatInt(now.Unix(), 10)
	name := base
	var dst *os.File
	for i := 2; ; i++ {
		dst, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, os.ErrExist) || i > 100 {
			break
		}
		name = base + "-" + strconv.Itoa(i)
	}
	if err != nil {
		return "", err
	}
	if _, err := src.Seek(off, io.SeekStart); err != nil {
		dst.Close()
		return "", err
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	syncDir(filepath.Dir(path))
	return name, err
}

// rotate renames Path to Path.1 (shifting older files up and dropping those
// past Keep) and starts a new file. The caller has synced the current file.
// The new file's first record chains to the last record of the old one
// because the head lives in memory.
func (l *Log) rotate() error {
	path, keep := l.opts.Path, l.opts.Keep
	if err := l.closeFile(); err != nil {
		return err
	}
	rotated, err := rotatedFiles(path)
	if err != nil {
		return err
	}
	// Drop what would fall past Keep, then shift the rest up by one.
	for _, f := range rotated {
		if n := rotatedIndex(path, f); n >= keep {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	for i := keep - 1; i >= 1; i-- {
		err := os.Rename(rotatedName(path, i), rotatedName(path, i+1))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(path, rotatedName(path, 1)); err != nil {
		return err
	}
	f, err := l.opts.openFile(path)
	if err != nil {
		return err
	}
	syncDir(filepath.Dir(path))
	l.f, l.size = f, 0
	l.countRotated()
	l.log.Info("audit log rotated", "seq", l.seq)
	return nil
}

// mayRotate reports whether a rotation may run now: it would delete only
// files whose newest record is at least MinAge old. Otherwise it records
// the refusal for Status and remembers when to look again, so that a
// refused rotation costs nothing per record.
func (l *Log) mayRotate() bool {
	now := l.opts.Now()
	if l.opts.MinAge < 0 {
		return true
	}
	if now.Before(l.rotateAfter) {
		return false
	}
	rotated, err := rotatedFiles(l.opts.Path)
	if err != nil {
		return true // rotate reports it
	}
	var young string
	var youngest time.Time
	for _, f := range rotated {
		if rotatedIndex(l.opts.Path, f) < l.opts.Keep {
			continue
		}
		newest := newestRecordTime(f)
		if now.Sub(newest) < l.opts.MinAge && newest.After(youngest) {
			young, youngest = f, newest
		}
	}
	l.mu.Lock()
	was := l.st.RotationRefused
	if young == "" {
		l.st.RotationRefused = ""
	} else {
		l.st.RotationRefused = fmt.Sprintf("rotating would delete %s, whose newest record is from %s, younger than the minimum age %s; nothing is deleted and %s grows past max_size until %s (raise audit.keep or audit.max_size)",
			filepath.Base(young), youngest.UTC().Format(time.RFC3339), l.opts.MinAge, filepath.Base(l.opts.Path), youngest.Add(l.opts.MinAge).UTC().Format(time.RFC3339))
	}
	msg := l.st.RotationRefused
	l.mu.Unlock()
	if young == "" {
		if was != "" {
			l.log.Info("audit log rotation resumed")
		}
		return true
	}
	l.rotateAfter = youngest.Add(l.opts.MinAge)
	if was == "" {
		l.log.Warn("audit log rotation refused", "reason", msg)
	}
	return false
}

// newestRecordTime is the time of the last record of a rotated file, or
// its modification time when that cannot be read.
func newestRecordTime(name string) time.Time {
	if t, err := readTail(name); err == nil && t.last != nil {
		return t.last.Time
	}
	if fi, err := os.Stat(name); err == nil {
		return fi.ModTime()
	}
	return time.Time{}
}

func rotatedName(path string, n int) string { return path + "." + strconv.Itoa(n) }

// syncDir fsyncs a directory so that a created or renamed file survives a
// crash. Best effort: some file systems refuse it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
