package main

// A player's egress: its bounded queue (subscriber), the write side of its
// connection (sink), and the flushers that write to most players. Frames
// flow one way: the hub appends to a player's queue, and the player's
// writer takes the whole queue at once and writes it in one writev.
//
// Who owns what:
//   - The hub goroutine owns a subscriber's join state (waitKey, started,
//     behindSince, ended, lastDropLog), its limits' state (qStart,
//     checkedAt, movedAt, lastTook) and is the only one to append to its
//     queue.
//   - The queue (q) is guarded by subscriber.qmu; queued, listed, took
//     and the counters are atomics. The writer takes all of q at once.
//   - The writer owns burst and waitVideoKey: the player's own goroutine
//     in pump, or a flusher while it holds the player's sink.mu.
//   - A sink is guarded by its mu, except what is fixed when it is made
//     (nc, writeNonblock, timeout, header, total) and bytesOut (atomic).
//   - A flusher's list of players to visit (dirty) is guarded by its mu;
//     the rest of it belongs to its goroutine.
//
// Lock order: sink.mu, then subscriber.qmu or flusher.mu. qmu and
// flusher.mu are never held together, and no goroutine holds two locks of
// one kind. The hub takes only qmu, and lists players on their flusher
// after an op, with no queue locked.
//
// Two write paths. A player on a plain TCP socket on Linux is written to
// by a flusher, together with the other players of that flusher, with a
// non-blocking writev (writev_linux.go): a thousand viewers cost a few
// goroutine wake-ups per pass, not a wake-up and a timer each per write.
// A TLS player, and every player on other systems, gets a blocking writer
// of its own (pumpBlocking): crypto/tls has no write that takes only what
// the socket takes now, and a half-written TLS record cannot be left for
// later. Both paths take the same queue, apply the same pause and receive
// flags (skip) and write through the same sink.
//
// The write clock. With -write-delay D, each flusher passes over its
// players at most once per D, at instants on a grid of period D that all
// flushers share, so that one wake-up serves every viewer and the writes
// of all streams go out together. A new viewer's first keyframe, and the
// first frame after an idle spell, go out at once. Publishers on plain
// TCP are read on the same grid (rtmpConn.waitForTick): after a read that
// drains the socket a publisher sleeps until the next instant, and the
// flushers pass ingestLead after it, so that what was read makes that
// pass. That holds only while passes are short (writeClock.readOnTick): a
// pass over a thousand viewers can take tens of milliseconds, and frames
// that arrive during it still reach the viewers it has not visited yet
// only if publishers are read at once.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// subscriber is one player's bounded queue. The hub goroutine pushes
// without ever blocking; the player's writer drains it.
type subscriber struct {
	// Fixed when it is made.
	hub     *hub
	key     streamKey
	info    clientInfo
	form    outputFormat  // which bytes of a frame it gets
	notices playerForm    // what it is told when the publisher comes and goes
	hangup  func()        // closes its connection; nil in tests
	done    chan struct{} // closed by end, on the hub goroutine
	// patient: a tap (a recording, a relay), never disconnected for being
	// slow or stalled: it skips to the next keyframe, and its queue is
	// bounded by bytes only, so a burst (a file pushed at -speed 0) fits.
	patient bool

	// The queue: the hub appends, the writer takes all at once. A mutex
	// and a slice, not a channel: a push is the hub's only cost per
	// viewer per frame, and a batch comes out in one step.
	qmu sync.Mutex
	// listed: on its flusher's list of players to visit. Next to qmu: the
	// hub and the flusher touch both together, so they share a cache line.
	listed atomic.Bool
	q      []*frame      // guarded by qmu; at most subQueueFrames
	ready  chan struct{} // cap 1: q has frames; for pumpBlocking, not for flushers
	queued atomic.Int64  // bytes in q
	// flusher takes from q once set; then nobody waits on ready.
	flusher atomic.Pointer[flusher]
	// afterEnd, guarded by qmu, is what end calls for a player its
	// flusher writes: nobody waits on done then (see pump).
	afterEnd func()

	// Counters, and the player's wishes (its connection's read side sets
	// them, its writer reads them).
	drops, bytesOut         atomic.Uint64
	noAudio, noVideo, pause atomic.Bool

	// took counts the writer's progress: batches taken from q, and
	// non-blocking writes the socket took something of. The hub reads it
	// to find a player that takes nothing (hub.stalled).
	took atomic.Uint64

	// Owned by the hub goroutine.
	// qStart is the stream's media clock when the oldest frame in q was
	// queued (q was empty then), qStartWall the hub's wall clock then
	// (hub.now), for the limit in media time (tooLate).
	qStart     int64
	qStartWall time.Duration
	// Stall watch (hub.stalled): when it last looked, when the player
	// last took something (media clock, ms; and wall clock), and took
	// then.
	checkedAt, movedAt int64
	movedWall          time.Duration
	lastTook           uint64
	waitKey            bool      // skipping until the next keyframe
	started            bool      // the FLV header has been queued
	behindSince        time.Time // when it started skipping; zero when in step
	ended              bool
	lastDropLog        time.Time
	// waitingSince is when it began to wait for a publisher, as the hub's
	// sweep saw it (hub.sweepWaiting); stale while the stream is live.
	waitingSince time.Time
	err          error // why done was closed; written before close(done)

	// Owned by its writer: its own goroutine (pump), or a flusher while
	// it holds out.mu.
	burst        []*frame // the join burst (GOP cache), set before the writer starts; written before q
	waitVideoKey bool     // after an unpause: skip video until a keyframe
	out          *sink    // set by pump before a flusher sees the player
}

// queueLen is the number of frames in sub's queue.
func (sub *subscriber) queueLen() int {
	sub.qmu.Lock()
	defer sub.qmu.Unlock()
	return len(sub.q)
}

// fits reports whether fs can be queued now, at the stream's media clock
// and the hub's wall clock. On the hub goroutine.
func (sub *subscriber) fits(fs []*frame, clock int64, now time.Duration) bool {
	n := 0
	for _, f := range fs {
		n += f.wireLen(sub.form)
	}
	q, maxFrames := sub.queueLen(), subQueueFrames
	if sub.patient {
		maxFrames = tapQueueFrames
	}
	return q+len(fs) <= maxFrames && sub.queued.Load()+int64(n) <= int64(sub.hub.cfg.QueueBytes) &&
		(q == 0 || !sub.tooLate(clock, now))
}

// tooLate reports whether the oldest frame in sub's non-empty queue is
// more than config.QueueTime of media old at clock, and was queued that
// long ago (now, hub.now): the player is that far behind, and skips to
// the next keyframe rather than fall further. On the hub goroutine.
func (sub *subscriber) tooLate(clock int64, now time.Duration) bool {
	limit := sub.hub.cfg.QueueTime
	return limit > 0 && clock-sub.qStart > limit.Milliseconds() && now-sub.qStartWall > limit
}

// forget drops what is queued, when the subscription ends with no more
// to send: a dropped player's frames are not kept until its writer
// notices.
func (sub *subscriber) forget() {
	sub.qmu.Lock()
	var n int64
	for _, f := range sub.q {
		n += int64(f.wireLen(sub.form))
	}
	clear(sub.q)
	sub.q = nil
	sub.qmu.Unlock()
	sub.queued.Add(-n)
}

// end closes the subscription once; the writer drains what is queued
// (unless err says to stop now) and returns err.
func (sub *subscriber) end(err error) {
	if sub.ended {
		return
	}
	sub.ended = true
	sub.err = err
	close(sub.done)
	sub.qmu.Lock()
	after := sub.afterEnd
	sub.qmu.Unlock()
	if after != nil {
		after()
	}
}

func (sub *subscriber) setReceive(audio, on bool) {
	if audio {
		sub.noAudio.Store(!on)
	} else {
		sub.noVideo.Store(!on)
	}
}

func (sub *subscriber) setPaused(p bool) { sub.pause.Store(p) }

// pumpBlocking is the player's own writer loop: it sends the join burst, then drains
// the queue, writing everything that has piled up in one writev (derp's
// sendLoop shape: drain without flushing, flush when empty, then block).
// With a write delay it writes at most once per delay, so that a viewer
// costs a few large writes a second instead of one per frame; a viewer
// that has been idle that long is written to at once.
// It returns when the subscription ends or a write fails.
func (sub *subscriber) pumpBlocking(write func(*net.Buffers) error) error {
	bufs := make(net.Buffers, 0, 64)
	if err := sub.writeBurst(&bufs, write); err != nil {
		return err
	}
	delay := sub.hub.cfg.WriteDelay
	var lastWrite time.Time
	var timer *time.Timer
	batch := make([]*frame, 0, 64)
	for {
		// Sleep out the rest of the delay first: while frames keep coming,
		// this timer is the writer's only wake-up per write.
		if wait := time.Until(lastWrite.Add(delay)); delay > 0 && wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
				defer timer.Stop()
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-sub.done:
			}
		}
		batch = sub.drain(batch)
		for len(batch) == 0 && !sub.isDone() {
			// Idle for at least the delay: the next frame goes out at once.
			select {
			case <-sub.ready:
				batch = sub.drain(batch)
			case <-sub.done:
			}
		}
		select {
		case <-sub.done:
			if !errors.Is(sub.err, errSubscriptionEnded) {
				return sub.err
			}
			// Send what was queued before the end, then stop.
			if batch = sub.drain(batch); len(batch) == 0 {
				return sub.err
			}
		default:
		}
		sub.dequeued(batch)
		if err := sub.writeBatch(batch, &bufs, write); err != nil {
			return sub.writeFailed(err)
		}
		if delay > 0 {
			lastWrite = time.Now()
		}
		clear(batch)
		batch = batch[:0]
	}
}

// writeBurst writes the join burst (the GOP cache) with blocking writes
// of burstPiece frames, each counted as progress (took): a long GOP going
// to a slow player is not a stall (hub.stalled).
func (sub *subscriber) writeBurst(bufs *net.Buffers, write func(*net.Buffers) error) error {
	const burstPiece = 16
	for b := sub.burst; len(b) > 0; {
		n := min(len(b), burstPiece)
		if err := sub.writeBatch(b[:n], bufs, write); err != nil {
			return err
		}
		sub.took.Add(1)
		b = b[n:]
	}
	sub.burst = nil
	return nil
}

// dequeued takes batch's bytes off the queue's count.
func (sub *subscriber) dequeued(batch []*frame) {
	if len(batch) > 0 {
		sub.took.Add(1)
	}
	var n int64
	for _, f := range batch {
		n += int64(f.wireLen(sub.form))
	}
	sub.queued.Add(-n)
}

// drain moves what is queued now into batch, without blocking.
func (sub *subscriber) drain(batch []*frame) []*frame {
	sub.qmu.Lock()
	defer sub.qmu.Unlock()
	batch = append(batch, sub.q...)
	clear(sub.q)
	sub.q = sub.q[:0]
	if cap(sub.q) > smallBuffers {
		sub.q = nil // what piled up during a join burst or a stall: not kept for the viewer's life
	}
	return batch
}

func (sub *subscriber) isDone() bool {
	select {
	case <-sub.done:
		return true
	default:
		return false
	}
}

// writeBatch writes the frames of a batch that this player wants, in one
// write.
func (sub *subscriber) writeBatch(batch []*frame, bufs *net.Buffers, write func(*net.Buffers) error) error {
	*bufs = (*bufs)[:0]
	var total int
	for _, f := range batch {
		n := f.wireLen(sub.form)
		if n == 0 || sub.skip(f) {
			continue
		}
		*bufs = f.appendWire(*bufs, sub.form)
		total += n
	}
	if total == 0 {
		return nil
	}
	all := *bufs
	err := write(bufs)
	clear(all) // drop references to frames the writer is done with
	*bufs = all[:0]
	sub.bytesOut.Add(uint64(total))
	return err
}

// skip applies pause and receiveAudio/receiveVideo to one frame.
func (sub *subscriber) skip(f *frame) bool {
	if f.typ != msgAudio && f.typ != msgVideo {
		return false
	}
	if sub.pause.Load() {
		sub.waitVideoKey = true
		return true
	}
	if f.typ == msgAudio {
		return sub.noAudio.Load()
	}
	if sub.waitVideoKey && !f.key {
		return true
	}
	sub.waitVideoKey = false
	return sub.noVideo.Load()
}

// sink is the write side of a player's connection. The fan-out writes
// media to it and the connection its own messages (RTMP status and pings,
// WebSocket pongs and Close), all under mu, so that nothing lands inside a
// half-written batch.
type sink struct {
	nc net.Conn
	// writeNonblock writes what the socket takes now, never waiting; nil
	// when there is no such write (TLS, or not Linux): blocking writes only.
	writeNonblock func(net.Buffers) (int, error)
	timeout       time.Duration // of a blocking write
	// header, if not nil, appends what goes before each media batch of n
	// bytes (WebSocket: a binary frame header, see wsBinaryHeader).
	header   func(dst []byte, n int) []byte
	total    *atomic.Uint64 // the server's bytes out
	bytesOut atomic.Uint64

	mu        sync.Mutex
	pending   net.Buffers // what a non-blocking write left over
	pendStore net.Buffers // pending's backing array
	queuedOwn int         // bytes of our own messages in pending
	moved     time.Time   // when pending last shrank, or became non-empty
	deadline  writeDeadline
	headerBuf [16]byte
	withHdr   net.Buffers

	// While a flusher writes the player's media (see pump): our own
	// messages queue behind pending, and the flusher sends them.
	flusher    *flusher
	sub        *subscriber // whose media the flusher writes
	handedBack bool        // pump has taken the player back from the flusher
	failed     func()      // the flusher calls it when a write fails
	writeErr   error       // why
}

func newSink(nc net.Conn, timeout time.Duration, header func([]byte, int) []byte, total *atomic.Uint64) *sink {
	return &sink{nc: nc, writeNonblock: newNonblockWriter(nc), timeout: timeout, header: header, total: total}
}

// maxQueuedOwn bounds the connection's own messages waiting behind media
// for a player that does not read: a client that keeps sending pings and
// reads nothing must not grow our memory.
const maxQueuedOwn = 64 << 10

var (
	errPlayerNotReading = errors.New("player reads nothing: its own messages piled up")
	errWriteStalled     = errors.New("write timeout: player took nothing for the ping timeout")
)

// writeOwn sends b, one message of the connection's own, after anything
// pending. While a flusher writes the media it never blocks: b goes behind
// what is pending and the flusher sends the rest (a blocking write there
// would hold mu, and the flusher with it, for as long as a slow player
// takes to drain its socket). Otherwise it blocks up to the timeout.
func (o *sink) writeOwn(b []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.flusher != nil {
		if o.queuedOwn += len(b); o.queuedOwn > maxQueuedOwn {
			return errPlayerNotReading
		}
		if len(o.pending) == 0 {
			o.moved = time.Now()
		}
		o.pending = append(o.pending, bytes.Clone(b))
		o.pendStore = o.pending
		err := o.tryWrite(o.pending)
		if len(o.pending) > 0 {
			o.flusher.visit(o.sub) // the rest goes out with the next pass
		}
		return err
	}
	if err := o.finishPending(); err != nil {
		return err
	}
	n, err := o.nc.Write(b)
	o.count(n)
	return err
}

// writeMedia sends one batch of media after anything pending, blocking.
func (o *sink) writeMedia(bufs *net.Buffers) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.finishPending(); err != nil {
		return err
	}
	b := *o.withHeader(bufs) // a copy: WriteTo consumes it
	n, err := b.WriteTo(o.nc)
	o.releaseHeader()
	o.count(int(n))
	return err
}

// finish writes what a non-blocking write left, blocking.
func (o *sink) finish() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.finishPending()
}

// finishPending writes what is pending, blocking; it also moves the write
// deadline for the blocking write its callers make next. mu is held.
func (o *sink) finishPending() error {
	o.deadline.refresh(o.nc, o.timeout)
	if len(o.pending) == 0 {
		return nil
	}
	n, err := o.pending.WriteTo(o.nc)
	o.count(int(n))
	o.dropPending()
	return err
}

// dropPending forgets what was pending (it has been written), keeping no
// references into frames. mu is held.
func (o *sink) dropPending() {
	clear(o.pendStore)
	o.pending, o.queuedOwn = nil, 0
	if cap(o.pendStore) > smallBuffers {
		o.pendStore = nil // a join burst's: not kept for the connection's life
	}
}

// smallBuffers is how many slices a sink's own lists keep between
// writes: those of a batch at the write delay; a longer list (a join
// burst) is let go after its write.
const smallBuffers = 16

// releaseHeader lets go of the slices withHeader listed. mu is held.
func (o *sink) releaseHeader() {
	clear(o.withHdr)
	o.withHdr = o.withHdr[:0]
	if cap(o.withHdr) > smallBuffers {
		o.withHdr = nil
	}
}

// writeNow sends one batch of media without blocking; what the socket does
// not take now stays pending. mu is held and nothing is pending.
func (o *sink) writeNow(bufs *net.Buffers) error {
	err := o.tryWrite(*o.withHeader(bufs))
	o.releaseHeader()
	return err
}

// tryWrite writes what b's socket takes now and keeps the rest pending.
// mu is held.
func (o *sink) tryWrite(b net.Buffers) error {
	o.deadline.refresh(o.nc, o.timeout) // an expired deadline fails even a non-blocking write
	now := time.Now()
	if len(o.pending) == 0 {
		o.moved = now // a fresh batch: the stall clock starts here
	}
	n, err := o.writeNonblock(b)
	o.count(n)
	if err != nil {
		return err
	}
	if n > 0 {
		o.moved = now
		if o.sub != nil {
			o.sub.took.Add(1) // for hub.stalled: it takes something
		}
	}
	for len(b) > 0 && n >= len(b[0]) {
		n -= len(b[0])
		b = b[1:]
	}
	if len(b) > 0 {
		rest := b[0][n:]
		o.pending = append(append(o.pendStore[:0], rest), b[1:]...)
		o.pendStore = o.pending
	} else {
		o.dropPending()
		return nil
	}
	// A player that takes nothing for the timeout is gone, like one whose
	// blocking write times out (a new frame would find it too slow, but
	// on a stream that has stopped no frame comes).
	if now.Sub(o.moved) > o.timeout {
		return errWriteStalled
	}
	return nil
}

// withHeader puts the sink's header before bufs, if it has one. mu is
// held.
func (o *sink) withHeader(bufs *net.Buffers) *net.Buffers {
	if o.header == nil {
		return bufs
	}
	var n int
	for _, b := range *bufs {
		n += len(b)
	}
	o.withHdr = append(append(o.withHdr[:0], o.header(o.headerBuf[:0], n)), *bufs...)
	return &o.withHdr
}

func (o *sink) count(n int) {
	o.bytesOut.Add(uint64(n))
	o.total.Add(uint64(n))
}

// pump writes the subscription to out until it ends or a write fails,
// then calls finished with why, once. A player on a plain TCP socket is
// written to by a flusher, together with the other players of that
// flusher and without blocking: pump writes its join burst, hands it over
// and returns, and no goroutine of the player's waits on its queue (a
// thousand viewers would cost a thousand stacks); the end, or a failed
// write, starts a short-lived goroutine for the rest (handBack). The
// others (TLS) get pumpBlocking, a blocking writer in the caller's
// goroutine, and pump returns when they end.
func (sub *subscriber) pump(out *sink, finished func(error)) {
	finished = once(finished)
	defer recoverWriter(finished)
	sub.out = out
	if out.writeNonblock == nil {
		finished(sub.pumpBlocking(out.writeMedia))
		return
	}
	var bufs net.Buffers
	if err := sub.writeBurst(&bufs, out.writeMedia); err != nil {
		finished(err) // the join burst goes out at once
		return
	}
	f := sub.hub.flushers[sub.hub.nextFlusher.Add(1)%uint64(len(sub.hub.flushers))]
	var handing sync.Once
	ended := func() {
		handing.Do(func() {
			go func() {
				defer recoverWriter(finished)
				finished(sub.handBack(out))
			}()
		})
	}
	out.mu.Lock()
	out.flusher, out.sub, out.failed = f, sub, ended
	out.mu.Unlock()
	// Under qmu, as end reads it: either end sees afterEnd, or this sees
	// done closed.
	sub.qmu.Lock()
	sub.afterEnd = ended
	sub.qmu.Unlock()
	if sub.isDone() {
		ended()
		return
	}
	sub.flusher.Store(f)
	f.visit(sub) // for what was queued before
}

// once makes f do its work the first time only.
func once(f func(error)) func(error) {
	var o sync.Once
	return func(err error) { o.Do(func() { f(err) }) }
}

// recoverWriter turns a panic in a player's writer into the end of that
// player alone.
func recoverWriter(finished func(error)) {
	if r := recover(); r != nil {
		finished(fmt.Errorf("writer panic: %v", r))
	}
}

// writeFailed is why a player whose write failed stopped: a kick ends
// the subscription, then closes the connection, and a write that failed
// on it meanwhile tells the close, not why.
func (sub *subscriber) writeFailed(err error) error {
	if errors.Is(err, net.ErrClosed) && sub.isDone() && sub.err != nil && !errors.Is(sub.err, errSubscriptionEnded) {
		return sub.err
	}
	return err
}

// handBack takes the player back from its flusher once the subscription
// has ended or a write failed, sends what was pending and queued before a
// clean end, and returns why it stopped.
func (sub *subscriber) handBack(out *sink) error {
	out.mu.Lock()
	out.handedBack = true // the flusher will not touch it again
	out.flusher = nil
	err := out.writeErr
	out.mu.Unlock()
	if err != nil {
		return sub.writeFailed(err)
	}
	if !errors.Is(sub.err, errSubscriptionEnded) {
		return sub.err
	}
	batch := sub.drain(nil)
	sub.dequeued(batch)
	if err := out.finish(); err != nil {
		return err
	}
	var bufs net.Buffers
	if err := sub.writeBatch(batch, &bufs, out.writeMedia); err != nil {
		return err
	}
	return sub.err
}

// flusher writes to its share of the players on plain TCP sockets: after
// frames arrive, one pass over those that got some, one non-blocking
// writev each. With a write delay it makes at most one pass per delay, on
// a grid of instants that all flushers share, so that one wake-up serves
// every viewer and the writes of all streams go out together.
type flusher struct {
	clock  *writeClock
	index  int // in hub.flushers
	delay  time.Duration
	wake   chan struct{} // cap 1: frames were queued
	urgent atomic.Bool   // a new viewer starts: pass now, whatever the delay
	mu     sync.Mutex
	// dirty lists the players the next pass visits: those that got frames
	// since the last (a player is on it once, see subscriber.listed), and
	// those the last left with bytes pending. A pass costs what its
	// players have to write, not how many players are idle. Guarded by mu.
	dirty    []*subscriber
	passTime atomic.Int64  // how long a pass takes, ns, smoothed over about 8 passes
	visits   atomic.Uint64 // players visited by passes so far

	// Owned by run.
	visiting []*subscriber // this pass's players
	again    []*subscriber // to visit next pass as well
	batch    []*frame
	bufs     net.Buffers
	retry    bool // a socket was full: try again even if no frame comes
}

// pendingRetry is how soon a flusher tries a full socket again when no
// frame wakes it.
const pendingRetry = 20 * time.Millisecond

func newFlusher(delay time.Duration) *flusher {
	return &flusher{delay: delay, wake: make(chan struct{}, 1)}
}

func (f *flusher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// list puts players on the next pass, and wakes the flusher. The caller
// has set their listed flags.
func (f *flusher) list(subs ...*subscriber) {
	f.mu.Lock()
	f.dirty = append(f.dirty, subs...)
	f.mu.Unlock()
	f.poke()
}

// visit puts sub on the next pass unless it is on it already.
func (f *flusher) visit(sub *subscriber) {
	if !sub.listed.Load() && !sub.listed.Swap(true) {
		f.list(sub)
	}
}

func (f *flusher) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last time.Time // when the last pass was due
	for {
		var retry <-chan time.Time
		if f.retry {
			timer.Reset(max(f.delay, pendingRetry))
			retry = timer.C
		}
		select {
		case <-f.wake:
		case <-retry:
		case <-ctx.Done():
			return
		}
		due := time.Now()
		if next := last.Add(f.delay); f.delay > 0 && due.Before(next) && !f.urgent.Swap(false) {
			lead := time.Duration(0)
			if f.clock.readOnTick() {
				lead = ingestLead // publishers are read on the grid instant
			}
			due = f.clock.tickAt(next.Add(-lead)).Add(lead)
			timer.Reset(time.Until(due))
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		last = due
		start := time.Now()
		f.pass()
		// A smoothed pass time, so that publishers and flushers see the
		// same mode from one tick to the next (see readOnTick).
		avg := f.passTime.Load()
		f.passTime.Store(avg - avg/8 + int64(time.Since(start))/8)
	}
}

var gridEpoch = time.Now()

// ingestLead is how long after a grid instant the flushers pass while
// publishers are read on the instant itself (waitForTick): long enough for
// what they read then to make this pass (20 publishers on 2 cores take
// about 2 ms to read).
const ingestLead = 5 * time.Millisecond

// writeClock is the grid of instants the flushers write on and publishers
// are read on.
type writeClock struct {
	delay    time.Duration // the grid's period; 0: no grid, write at once
	flushers []*flusher    // fixed once the hub is made
}

// readOnTick reports whether publishers are read on the grid: while every
// flusher's passes take less than shortPass. While passes are long, frames
// that arrive during a pass still reach the viewers it has not visited
// yet, but only if publishers are read at once.
func (c *writeClock) readOnTick() bool {
	for _, f := range c.flushers {
		if f.passTime.Load() >= int64(shortPass) {
			return false
		}
	}
	return true
}

const shortPass = 5 * time.Millisecond

// tickAt is the first instant on the grid at or after t.
func (c *writeClock) tickAt(t time.Time) time.Time {
	off := t.Sub(gridEpoch) % c.delay
	if off < 0 {
		off += c.delay // t before the epoch (tests in fake time)
	}
	if off == 0 {
		return t
	}
	return t.Add(c.delay - off)
}

// pass writes to the players listed since the last pass.
func (f *flusher) pass() {
	f.mu.Lock()
	f.visiting, f.dirty = f.dirty, f.visiting
	f.mu.Unlock()
	f.visits.Add(uint64(len(f.visiting)))
	for _, sub := range f.visiting {
		// Unlisted before its queue is drained: a frame pushed from here
		// on lists it again.
		sub.listed.Store(false)
		if !f.writeSome(sub) {
			f.again = append(f.again, sub)
		}
	}
	clear(f.visiting)
	f.visiting = f.visiting[:0]
	// Players with full sockets: on the next pass too, which the retry
	// timer brings (a poke would spin on a socket that stays full).
	f.retry = len(f.again) > 0
	f.mu.Lock()
	for _, sub := range f.again {
		if !sub.listed.Swap(true) {
			f.dirty = append(f.dirty, sub)
		}
	}
	f.mu.Unlock()
	clear(f.again)
	f.again = f.again[:0]
}

// writeSome writes what is pending and queued for sub, without blocking. It
// reports whether sub is done with until more frames come; false means
// the next pass must visit it again.
func (f *flusher) writeSome(sub *subscriber) bool {
	o := sub.out
	if !o.mu.TryLock() {
		return false // its connection is writing a message of its own
	}
	defer o.mu.Unlock()
	if o.handedBack || o.writeErr != nil {
		return true
	}
	if err := f.writeQueued(sub); err != nil {
		o.writeErr = err
		o.failed()
		return true
	}
	if len(o.pending) > 0 {
		sub.hub.counters.socketFull.Add(1)
		return false
	}
	return true
}

// writeQueued finishes what is pending, then writes sub's queue. o.mu is
// held.
func (f *flusher) writeQueued(sub *subscriber) error {
	o := sub.out
	if len(o.pending) > 0 {
		if err := o.tryWrite(o.pending); err != nil || len(o.pending) > 0 {
			return err // still full: the queue takes what comes meanwhile
		}
	}
	f.batch = sub.drain(f.batch[:0])
	if len(f.batch) == 0 {
		return nil
	}
	sub.dequeued(f.batch)
	err := sub.writeBatch(f.batch, &f.bufs, o.writeNow)
	clear(f.batch)
	return err
}

// writeDeadline keeps a connection's write deadline about timeout ahead
// without a syscall-backed SetWriteDeadline on every write: it moves the
// deadline only when the last move is older than a second, or than half
// the timeout when that is shorter, so that a write always has at least
// half the timeout.
type writeDeadline struct{ set time.Time }

func (d *writeDeadline) refresh(nc net.Conn, timeout time.Duration) {
	now := time.Now()
	if now.Sub(d.set) < min(time.Second, timeout/2) {
		return
	}
	d.set = now
	nc.SetWriteDeadline(now.Add(timeout))
}
