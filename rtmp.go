package main

// RTMP connections (Adobe RTMP 1.0): the accept loop, one goroutine per
// connection from handshake to close, protocol control (§5.4) and user
// control messages (§6.2, §7.1.7), and the NetConnection/NetStream
// commands (§7.2) that make a connection a publisher or a player. The
// handshake is in handshake.go, the chunk stream in chunk.go.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The message stream id every player and publisher gets from createStream.
// A connection carries at most one stream at a time, so one id is enough
// and lets all players share the same encoded chunks.
const mediaStreamID = 1

const (
	windowAckSize    = 5000000 // what NMS sends; peers ack us every this many bytes
	handshakeTimeout = 10 * time.Second
)

var errRTMPProtocol = errors.New("rtmp: protocol violation")

// rtmpServer accepts RTMP connections and hands them to the hub.
type rtmpServer struct {
	cfg   *config
	hub   *hub
	admit *admission
	log   *slog.Logger
	// players caps players at their share of -max-conns (nil: no limit);
	// shared with the HTTP server.
	players *playerSlots

	mu     sync.Mutex
	closed bool           // shutting down: no new connections
	conns  sync.WaitGroup // one per connection's goroutine
}

func newRTMPServer(cfg *config, h *hub, admit *admission, log *slog.Logger) *rtmpServer {
	return &rtmpServer{cfg: cfg, hub: h, admit: admit, log: log}
}

var errServerClosed = errors.New("gms: server closed")

// serve accepts until the listener is closed, in the manner of
// (*http.Server).Serve: back off on temporary errors, one goroutine per
// connection. The end of ctx closes every connection it accepted.
func (s *rtmpServer) serve(ctx context.Context, ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return errServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("rtmp accept", "err", err, "retry", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(nc)
		if c == nil {
			nc.Close() // shutting down
			continue
		}
		go c.serve(ctx) // its end calls s.conns.Done
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (s *rtmpServer) newConn(nc net.Conn) *rtmpConn {
	id := newClientID()
	c := &rtmpConn{
		srv:     s,
		nc:      nc,
		id:      id,
		log:     s.log.With("conn", id, "proto", "rtmp", "remote", nc.RemoteAddr().String()),
		created: time.Now(),
		out:     newSink(nc, s.cfg.PingTimeout, nil, &s.hub.counters.bytesOut),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.conns.Add(1)
	return c
}

// shutdown refuses new connections and waits for every connection's
// goroutine; the end of serve's ctx is what closes them.
func (s *rtmpServer) shutdown() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.conns.Wait()
}

// rtmpConn is one RTMP connection: handshake, then commands, then either
// publishing (the read loop feeds the hub) or playing (a writer goroutine
// drains the subscriber queue while the read loop handles commands).
type rtmpConn struct {
	srv     *rtmpServer
	nc      net.Conn
	id      string
	log     *slog.Logger
	created time.Time
	in      drainReader // nc, noting whether a read took all there was
	br      *bufio.Reader
	cr      *chunkReader

	out        *sink  // every write to nc goes through it
	lastAck    uint64 // bytes read when we last sent an Acknowledgement
	counted    uint64 // bytes read already added to the server's counters
	peerWindow uint32 // the peer's Window Acknowledgement Size

	app      string
	appQuery string // a query that came with the app in connect

	pub     *publisher     // while publishing
	sub     *subscriber    // while playing
	helpers sync.WaitGroup // the pinger and the player's writer; serve waits for them

	// playerSlot: it holds a slot of rtmpServer.players, from play until
	// closeStream or close.
	playerSlot bool

	stopCtx  func() bool // undoes the hang-up at the server's shutdown
	stopPing func()
	// A parked player (idle_linux.go): its place in the poller; when its
	// silence becomes a timeout (unix ns, 0: never), which the pinger
	// checks; and silent, set by the pinger past it.
	idle         idleWait
	parkDeadline atomic.Int64
	silent       atomic.Bool
	woken        bool // resumed: read once before parking again
	// stopped is why the server stopped the play and closed the
	// connection (a kick, a failed write), which the close line says
	// rather than the "closed by server" the read then sees.
	stopped atomic.Value // closeReason
}

// writeRaw writes already encoded chunks.
func (c *rtmpConn) writeRaw(b []byte) error {
	return c.out.writeOwn(b)
}

// writeCommand sends an AMF0 command on the command chunk stream.
func (c *rtmpConn) writeCommand(streamID uint32, values ...any) error {
	body := amf0AppendAll(nil, values...)
	return c.writeRaw(appendChunks(nil, csidCommand, msgCommandAMF0, streamID, 0, body, c.srv.cfg.ChunkSize))
}

func statusObject(level, code, desc string) amfObject {
	return amfObject{{"level", level}, {"code", code}, {"description", desc}}
}

func (c *rtmpConn) onStatus(level, code, desc string) error {
	return c.writeCommand(mediaStreamID, "onStatus", 0.0, nil, statusObject(level, code, desc))
}

func (c *rtmpConn) serve(ctx context.Context) {
	c.stopCtx = context.AfterFunc(ctx, c.hangUp)
	c.log.Info("connect")
	counters := &c.srv.hub.counters
	counters.accepted[protoRTMP].Add(1)
	counters.active[protoRTMP].Add(1)
	c.run(true)
}

// run reads and handles messages until the connection ends, then cleans
// up and logs; or until a player with nothing to read is parked
// (idle_linux.go), and then resume runs it again on a new goroutine.
func (c *rtmpConn) run(handshake bool) {
	parked := false
	reason := reasonClosed
	defer func() {
		if r := recover(); r != nil {
			parked = false
			reason = closeReason(fmt.Sprintf("panic: %v", r))
			c.log.Error("rtmp panic", "panic", r)
		}
		if !parked {
			c.end(reason)
		}
	}()
	if handshake {
		c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
		c.in.r = c.nc
		c.br = bufio.NewReaderSize(&c.in, publisherReadBuffer)
		if err := serverHandshake(c.br, c.nc); err != nil {
			c.srv.hub.counters.handshakeFailures.Add(1)
			reason = reasonOf(err)
			return
		}
		c.nc.SetDeadline(time.Time{})
		c.cr = newChunkReader(c.br)
		c.stopPing = c.startPinger()
	}
	err := c.readLoop()
	if parked = errors.Is(err, errParked); !parked {
		reason = reasonOf(err)
	}
}

// resume runs the read loop of a parked player that has something to read,
// has been closed, or has been silent too long.
func (c *rtmpConn) resume() {
	c.parkDeadline.Store(0)
	if c.silent.Load() {
		c.end(reasonTimeout)
		return
	}
	c.woken = true // there is something to read: read before parking again
	if c.br == nil {
		c.takeReader()
	}
	c.run(false)
}

// hangUp closes the connection from any goroutine; a parked player is
// woken to see it.
func (c *rtmpConn) hangUp() {
	c.nc.Close()
	idle().wake(&c.idle)
}

// end is the connection's last step, on whichever goroutine read last.
func (c *rtmpConn) end(reason closeReason) {
	if c.stopPing != nil {
		c.stopPing()
	}
	c.stopCtx()
	c.cleanup()
	// After cleanup, which waits for playEnded: a kick closes the
	// connection before the writer hears why.
	if stopped, ok := c.stopped.Load().(closeReason); ok && reason == reasonClosedByServer {
		reason = stopped
	}
	var in uint64
	if c.cr != nil {
		in = c.cr.bytesRead.Load()
	}
	c.log.Info("close", "reason", reason, "bytes_in", in, "reads", c.in.reads, "bytes_out", c.out.bytesOut.Load(),
		"duration", time.Since(c.created).Round(time.Millisecond))
	c.srv.hub.counters.active[protoRTMP].Add(-1)
	c.srv.conns.Done()
}

var errKicked = errors.New("kicked")

func (c *rtmpConn) cleanup() {
	if c.pub != nil {
		c.srv.hub.unpublish(c.pub)
	}
	if c.sub != nil {
		c.srv.hub.unsubscribe(c.sub)
	}
	if c.playerSlot {
		c.srv.players.release()
	}
	c.nc.Close()
	c.helpers.Wait()
}

// The read buffer of a connection: a publisher's media comes in large
// reads; a player sends only small messages (acknowledgements, ping
// answers, commands), and a thousand players must not hold 16 KiB each.
// A message longer than the buffer is read past it (chunkReader reads
// payloads with io.ReadFull).
const (
	publisherReadBuffer = 16 << 10
	playerReadBuffer    = 512
)

// setReadBuffer gives the connection a read buffer of size, keeping what
// the old one had read ahead.
func (c *rtmpConn) setReadBuffer(size int) {
	if c.br.Size() == size {
		return
	}
	if c.br.Buffered() > 0 {
		// Rare (commands sent ahead of play's answer): keep the buffer,
		// and what it holds, rather than read through something other
		// than the socket, which parkable could not see.
		return
	}
	if size == playerReadBuffer {
		c.takeReader()
		return
	}
	c.br = bufio.NewReaderSize(&c.in, size)
	c.cr.r = c.br
}

// readTimeout is how long the peer may stay silent. A publisher sends media
// all the time; a player only answers our pings, so it gets a ping interval
// more.
func (c *rtmpConn) readTimeout() time.Duration {
	if c.sub == nil {
		return c.srv.cfg.PingTimeout
	}
	if c.srv.cfg.Ping <= 0 {
		return 0 // no pings to answer: the write deadline finds a dead player
	}
	return c.srv.cfg.Ping + c.srv.cfg.PingTimeout
}

// errParked: the read loop has parked the connection (idle_linux.go).
var errParked = errors.New("parked")

func (c *rtmpConn) readLoop() error {
	for {
		if c.woken {
			c.woken = false
		} else if c.parkable() && c.park() {
			return errParked
		}
		var deadline time.Time
		if d := c.readTimeout(); d > 0 {
			deadline = time.Now().Add(d)
		}
		c.nc.SetReadDeadline(deadline)
		msg, err := c.cr.readMessage()
		if err != nil {
			return err
		}
		if err := c.ackIfDue(); err != nil {
			return err
		}
		read := c.cr.bytesRead.Load()
		c.srv.hub.counters.bytesIn.Add(read - c.counted)
		c.counted = read
		if err := c.handleMessage(msg); err != nil {
			return err
		}
		c.waitForTick()
	}
}

// parkable: a player with nothing read ahead waits for more without a
// goroutine (idle_linux.go); if the socket has more already, it is
// resumed at once. Publishers send all the time.
func (c *rtmpConn) parkable() bool {
	return c.sub != nil && c.pub == nil && c.br.Buffered() == 0
}

// park parks the player (idle_linux.go), reporting whether it did: then
// resume runs on another goroutine, and this one must touch nothing more.
// Its read buffer, empty, goes back to a pool while it waits.
func (c *rtmpConn) park() bool {
	c.silent.Store(false) // it was not: it sent something
	c.parkDeadline.Store(0)
	if d := c.readTimeout(); d > 0 {
		c.parkDeadline.Store(time.Now().Add(d).UnixNano())
	}
	pooled := c.br.Size() == playerReadBuffer
	if pooled {
		playerReaders.Put(c.br)
		c.br, c.cr.r = nil, nil
	}
	if idle().park(&c.idle, c.nc, c.resume) {
		return true
	}
	c.parkDeadline.Store(0)
	if pooled {
		c.takeReader()
	}
	return false
}

// playerReaders holds spare player read buffers: a parked player gives
// its own back, and takes one when it resumes.
var playerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, playerReadBuffer) }}

// takeReader gives a player back a read buffer after it was parked.
func (c *rtmpConn) takeReader() {
	c.br = playerReaders.Get().(*bufio.Reader)
	c.br.Reset(&c.in)
	c.cr.r = c.br
}

// waitForTick batches a publisher's reads with a write delay: once it has
// read all there was, it sleeps until the next tick of the flushers' grid
// and then reads what came meanwhile in one go. The frames would wait for
// that tick anyway; the publisher's goroutine wakes 20 times a second
// instead of once per message, which is most of what a small stream costs
// (a wake-up from the network poller is dearer than the read). Only on
// plain TCP: TLS reads come back short while more is buffered.
func (c *rtmpConn) waitForTick() {
	clock := c.srv.hub.clock
	if c.pub == nil || clock.delay == 0 || c.out.writeNonblock == nil || c.br.Buffered() > 0 || !c.in.drained ||
		!clock.readOnTick() {
		return
	}
	time.Sleep(time.Until(clock.tickAt(time.Now())))
}

// drainReader notes whether the last read came back short, that is, took
// everything the socket had.
type drainReader struct {
	r       io.Reader
	drained bool
	reads   int // for the close log: how often the connection was read
}

func (d *drainReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.drained = n < len(p)
	d.reads++
	return n, err
}

// startPinger sends a PingRequest every ping interval (§7.1.7 event 6), so
// that a peer that vanished without a FIN is noticed by the idle timeout.
// A timer, not a goroutine of its own: a thousand idle players would hold
// a thousand stacks for a message a minute. A ping being sent counts in
// helpers, so that cleanup waits for it.
func (c *rtmpConn) startPinger() (stop func()) {
	every := c.srv.cfg.Ping
	if every <= 0 {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	ping := func() {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		c.helpers.Add(1)
		mu.Unlock()
		defer c.helpers.Done()
		if d := c.parkDeadline.Load(); d != 0 && time.Now().UnixNano() > d {
			// Parked and silent past the read timeout, which no read
			// deadline can tell while no goroutine reads.
			c.silent.Store(true)
			idle().wake(&c.idle)
			return
		}
		ms := uint32(time.Since(c.created).Milliseconds())
		if c.writeRaw(appendUserControl(nil, ucPingRequest, ms)) != nil {
			return
		}
		mu.Lock()
		if !stopped {
			t.Reset(every)
		}
		mu.Unlock()
	}
	mu.Lock()
	t = time.AfterFunc(every, ping)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// ackIfDue sends an Acknowledgement (§5.4.3) each time the bytes received
// pass another window of the size the peer asked for.
func (c *rtmpConn) ackIfDue() error {
	read := c.cr.bytesRead.Load()
	if c.peerWindow == 0 || read-c.lastAck < uint64(c.peerWindow) {
		return nil
	}
	c.lastAck = read
	return c.writeRaw(appendUint32Control(nil, msgAck, uint32(read)))
}

func (c *rtmpConn) handleMessage(msg rtmpMessage) error {
	switch msg.Type {
	case msgSetChunkSize, msgAbort, msgAck, msgSetPeerBandwidth:
		return nil
	case msgWindowAckSize:
		if len(msg.Payload) >= 4 {
			c.peerWindow = binary.BigEndian.Uint32(msg.Payload)
		}
		return nil
	case msgUserControl:
		return c.handleUserControl(msg.Payload)
	case msgCommandAMF0:
		return c.handleCommand(msg.Payload)
	case msgCommandAMF3:
		// §7.1.1: an AMF3 command starts with a format byte (0), then AMF0.
		if len(msg.Payload) == 0 {
			return nil
		}
		return c.handleCommand(msg.Payload[1:])
	case msgAudio, msgVideo, msgDataAMF0, msgDataAMF3:
		if c.pub == nil {
			return nil // media before publish: ignore, as FMS does
		}
		payload := msg.Payload
		if msg.Type == msgDataAMF3 {
			if len(payload) == 0 {
				return nil
			}
			payload = payload[1:]
		}
		if msg.Tag != nil {
			return c.pub.ingestTag(msg.Type, msg.Time, msg.Tag)
		}
		return c.pub.ingest(msg.Type, msg.Time, payload)
	}
	return nil // §5.4: unknown message types are ignored
}

func (c *rtmpConn) handleUserControl(p []byte) error {
	if len(p) < 2 {
		return fmt.Errorf("%w: short user control message", errRTMPProtocol)
	}
	if binary.BigEndian.Uint16(p) == ucPingRequest && len(p) >= 6 {
		return c.writeRaw(appendUserControl(nil, ucPingResponse, binary.BigEndian.Uint32(p[2:])))
	}
	return nil
}

func (c *rtmpConn) handleCommand(body []byte) error {
	cmd, err := decodeCommand(body)
	if err != nil {
		return fmt.Errorf("rtmp: bad command: %w", err)
	}
	switch cmd.Name {
	case "connect":
		return c.onConnect(cmd)
	case "releaseStream", "FCPublish", "FCUnpublish", "FCSubscribe", "getStreamLength":
		return c.onStreamHelper(cmd)
	case "createStream":
		return c.writeCommand(0, "_result", cmd.TxnID, nil, float64(mediaStreamID))
	case "publish":
		return c.onPublish(cmd)
	case "play":
		return c.onPlay(cmd)
	case "deleteStream", "closeStream":
		return c.onDeleteStream()
	case "receiveAudio", "receiveVideo":
		if c.sub != nil && len(cmd.Args) > 0 {
			on, _ := cmd.Args[0].(bool)
			c.sub.setReceive(cmd.Name == "receiveAudio", on)
		}
		return nil
	case "pause", "pauseRaw":
		return c.onPause(cmd)
	case "_result", "_error", "onBWDone", "_checkbw", "onStatus":
		return nil // replies to our calls, or bandwidth-check noise
	}
	if cmd.TxnID != 0 {
		return c.writeCommand(0, "_error", cmd.TxnID, nil,
			statusObject("error", "NetConnection.Call.Failed", "unknown command "+truncate(cmd.Name, 64)))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (c *rtmpConn) onConnect(cmd rtmpCommand) error {
	if c.app != "" {
		return fmt.Errorf("%w: second connect", errRTMPProtocol)
	}
	obj, _ := cmd.Object.(amfObject)
	// Some encoders put the query on the server URL (OBS: rtmp://host/live?sign=...),
	// so it arrives in the app; it stands for the stream's query when that has none.
	app, appQuery, _ := strings.Cut(obj.String("app"), "?")
	app = strings.TrimSuffix(app, "/")
	if !validName(app) {
		c.writeCommand(0, "_error", cmd.TxnID, nil,
			statusObject("error", "NetConnection.Connect.Rejected", "invalid app name"))
		return fmt.Errorf("rtmp: connect rejected: invalid app %q", truncate(app, 64))
	}
	c.app, c.appQuery = app, appQuery
	enc, _ := obj.Number("objectEncoding")
	c.log = c.log.With("app", app)

	var out []byte
	out = appendUint32Control(out, msgWindowAckSize, windowAckSize)
	// §5.4.5 Set Peer Bandwidth: window size, limit type 2 (dynamic).
	out = appendControl(out, msgSetPeerBandwidth, append(binary.BigEndian.AppendUint32(nil, windowAckSize), 2))
	out = appendUint32Control(out, msgSetChunkSize, uint32(c.srv.cfg.ChunkSize))
	props := amfObject{{"fmsVer", "FMS/3,0,1,123"}, {"capabilities", 31.0}}
	if asksEnhanced(obj) {
		props = append(props, enhancedCaps...)
	}
	body := amf0AppendAll(nil, "_result", cmd.TxnID,
		props,
		amfObject{
			{"level", "status"},
			{"code", "NetConnection.Connect.Success"},
			{"description", "Connection succeeded."},
			{"objectEncoding", enc},
		})
	out = appendChunks(out, csidCommand, msgCommandAMF0, 0, 0, body, c.srv.cfg.ChunkSize)
	return c.writeRaw(out)
}

// Enhanced RTMP v2 ("Enhancing NetConnection connect Command"): a client
// that declares fourCcList, videoFourCcInfoMap, audioFourCcInfoMap or
// capsEx in connect hears what gms carries in the _result's properties.
// gms forwards any codec (FourCcInfoMask CanForward, 0x04, on "*"); it
// names the ones it also reads (keyframes, codec parameters). capsEx:
// Multitrack (0x02) and ModEx (0x04) are parsed and passed through.
var enhancedCaps = func() amfObject {
	const canForward = 4.0
	video, audio := []string{"av01", "vp09", "vp08", "hvc1", "avc1"}, []string{"Opus", "fLaC", "ac-3", "ec-3", "mp4a", ".mp3"}
	var list []any
	videoMap, audioMap := amfObject{{"*", canForward}}, amfObject{{"*", canForward}}
	for _, cc := range video {
		list = append(list, cc)
		videoMap = append(videoMap, amfProp{cc, canForward})
	}
	for _, cc := range audio {
		list = append(list, cc)
		audioMap = append(audioMap, amfProp{cc, canForward})
	}
	return amfObject{
		{"fourCcList", list},
		{"videoFourCcInfoMap", videoMap},
		{"audioFourCcInfoMap", audioMap},
		{"capsEx", float64(0x02 | 0x04)}, // CapsExMask Multitrack | ModEx
	}
}()

// asksEnhanced reports whether a connect command object declares Enhanced
// RTMP support; legacy clients get the legacy answer, byte for byte.
func asksEnhanced(obj amfObject) bool {
	for _, k := range []string{"fourCcList", "videoFourCcInfoMap", "audioFourCcInfoMap", "capsEx"} {
		if _, ok := obj.Get(k); ok {
			return true
		}
	}
	return false
}

// onStreamHelper answers the FMLE-style helper calls ffmpeg and OBS make
// around publish. They need no action here; FCPublish gets the
// onFCPublish notification encoders wait for.
func (c *rtmpConn) onStreamHelper(cmd rtmpCommand) error {
	switch cmd.Name {
	case "FCPublish":
		name, _ := argString(cmd, 0)
		c.writeCommand(0, "onFCPublish", 0.0, nil, statusObject("status", "NetStream.Publish.Start", truncate(name, 128)))
	case "getStreamLength":
		return c.writeCommand(0, "_result", cmd.TxnID, nil, 0.0)
	}
	if cmd.TxnID != 0 {
		return c.writeCommand(0, "_result", cmd.TxnID, nil, amfUndefined{})
	}
	return nil
}

func argString(cmd rtmpCommand, i int) (string, bool) {
	if i >= len(cmd.Args) {
		return "", false
	}
	s, ok := cmd.Args[i].(string)
	return s, ok
}

// admit checks a publish or play command before it reaches the hub: the
// connection's state, the stream name (status badName when it is not in
// the safe set), the signature and the hook (status "NetStream.Publish.
// Unauthorized" or "NetStream.Play.Unauthorized").
func (c *rtmpConn) admit(act action, cmd rtmpCommand, badName string) (streamKey, clientInfo, error) {
	if c.app == "" {
		return streamKey{}, clientInfo{}, fmt.Errorf("%w: %s before connect", errRTMPProtocol, act)
	}
	if c.pub != nil || c.sub != nil {
		return streamKey{}, clientInfo{}, fmt.Errorf("%w: %s on a busy stream", errRTMPProtocol, act)
	}
	raw, _ := argString(cmd, 0)
	name, query, _ := strings.Cut(raw, "?")
	if query == "" {
		query = c.appQuery
	}
	if !validName(name) {
		c.onStatus("error", badName, "invalid stream name")
		return streamKey{}, clientInfo{}, fmt.Errorf("rtmp: %s rejected: invalid name %q", act, truncate(name, 64))
	}
	key := streamKey{c.app, name}
	c.log = c.log.With("stream", name)
	info := clientInfo{ID: c.id, IP: remoteIP(c.nc), Protocol: protoRTMP, Created: c.created, Query: query}
	if err := c.srv.admit.check(act, key, info); err != nil {
		status := map[action]string{actPublish: "NetStream.Publish.Unauthorized", actPlay: "NetStream.Play.Unauthorized"}[act]
		text := refusalText
		if errors.Is(err, errDraining) {
			status = map[action]string{actPublish: "NetStream.Publish.Failed", actPlay: "NetStream.Play.Failed"}[act]
			text = errDraining.Error()
		}
		c.onStatus("error", status, text)
		return streamKey{}, clientInfo{}, fmt.Errorf("rtmp: %s refused: %w", act, err)
	}
	return key, info, nil
}

func (c *rtmpConn) onPublish(cmd rtmpCommand) error {
	key, info, err := c.admit(actPublish, cmd, "NetStream.Publish.BadName")
	if err != nil {
		return err
	}
	pub, err := c.srv.hub.publish(key, info, c.cr.bytesRead.Load, c.hangUp)
	if err != nil {
		c.onStatus("error", "NetStream.Publish.BadName", "stream "+key.String()+" is already publishing")
		return fmt.Errorf("rtmp: publish rejected: %w", err)
	}
	c.pub = pub
	c.setReadBuffer(publisherReadBuffer)
	c.log.Info("publish", "query", redactQuery(info.Query))
	var out []byte
	out = appendUserControl(out, ucStreamBegin, mediaStreamID)
	if err := c.writeRaw(out); err != nil {
		return err
	}
	return c.onStatus("status", "NetStream.Publish.Start", key.String()+" is now published.")
}

func (c *rtmpConn) onPlay(cmd rtmpCommand) error {
	// The slot first, so that a server full of players refuses the next
	// before its signature check or hook costs anything. Every error here
	// ends the connection, and cleanup gives the slot back.
	if !c.playerSlot {
		if !c.srv.players.take(c.nc.RemoteAddr().String()) {
			c.onStatus("error", "NetStream.Play.Failed", "server busy")
			return fmt.Errorf("rtmp: play refused: %w", errTooManyPlayers)
		}
		c.playerSlot = true
	}
	key, info, err := c.admit(actPlay, cmd, "NetStream.Play.StreamNotFound")
	if err != nil {
		return err
	}
	// §7.2.2.1: start, duration and reset. Live streams ignore start and
	// duration; reset only decides whether Play.Reset is sent.
	reset := true
	if len(cmd.Args) > 3 {
		if b, ok := cmd.Args[3].(bool); ok {
			reset = b
		}
	}
	var out []byte
	out = appendUserControl(out, ucStreamBegin, mediaStreamID)
	if err := c.writeRaw(out); err != nil {
		return err
	}
	if reset {
		c.onStatus("status", "NetStream.Play.Reset", "Playing and resetting "+key.String()+".")
	}
	c.onStatus("status", "NetStream.Play.Start", "Started playing "+key.String()+".")

	c.setReadBuffer(playerReadBuffer)
	c.sub = c.srv.hub.subscribe(key, info, rtmpForm{c.srv.cfg.ChunkSize}, c.hangUp)
	c.log.Info("play", "query", redactQuery(info.Query))
	sub := c.sub
	c.helpers.Add(1) // until playEnded: cleanup waits for the writer
	go sub.pump(c.out, c.playEnded)
	return nil
}

// playEnded is told why the player's writer stopped: the subscription
// ended or a write failed.
func (c *rtmpConn) playEnded(err error) {
	defer c.helpers.Done()
	switch {
	case errors.Is(err, errNoPublisher):
		// Told, then closed: a player left to wait on would hold its
		// slot, and one that goes on would not know why nothing comes.
		c.onStatus("error", "NetStream.Play.StreamNotFound", "stream not found")
		c.log.Info("play stopped", "reason", reasonOf(err))
		c.stopped.Store(reasonOf(err))
		c.hangUp()
	case err != nil && !errors.Is(err, errSubscriptionEnded):
		c.log.Info("play stopped", "reason", reasonOf(err))
		c.stopped.Store(reasonOf(err))
		c.hangUp() // the read loop then ends too
	}
}

func (c *rtmpConn) onDeleteStream() error {
	if c.pub != nil {
		c.srv.hub.unpublish(c.pub)
		c.pub = nil
		c.log.Info("unpublish")
	}
	if c.sub != nil {
		c.srv.hub.unsubscribe(c.sub)
		c.sub = nil
		c.srv.players.release()
		c.playerSlot = false
		c.log.Info("stop")
	}
	return nil
}

func (c *rtmpConn) onPause(cmd rtmpCommand) error {
	if c.sub == nil {
		return nil
	}
	pause := true
	if len(cmd.Args) > 0 {
		if b, ok := cmd.Args[0].(bool); ok {
			pause = b
		}
	}
	c.sub.setPaused(pause)
	if pause {
		return c.onStatus("status", "NetStream.Pause.Notify", "Paused live")
	}
	return c.onStatus("status", "NetStream.Unpause.Notify", "Unpaused live")
}

// rtmpForm is RTMP players' part in the hub: chunks at our chunk size,
// and status messages when the publisher comes and goes.
type rtmpForm struct{ chunkSize int }

func (rtmpForm) format() outputFormat { return formatRTMP }

func (f rtmpForm) publishNotice(key streamKey) *frame { return rtmpPublishNotify(key, f.chunkSize) }

func (f rtmpForm) unpublishNotice(key streamKey) *frame { return rtmpUnpublishNotify(key, f.chunkSize) }

// rtmpUnpublishNotify is what RTMP players get when the publisher leaves
// (what FMS and NMS send): onStatus NetStream.Play.UnpublishNotify, then
// Stream EOF.
func rtmpUnpublishNotify(key streamKey, chunkSize int) *frame {
	body := amf0AppendAll(nil, "onStatus", 0.0, nil,
		statusObject("status", "NetStream.Play.UnpublishNotify", key.String()+" is now unpublished."))
	b := appendChunks(nil, csidCommand, msgCommandAMF0, mediaStreamID, 0, body, chunkSize)
	return &frame{rtmp: appendUserControl(b, ucStreamEOF, mediaStreamID)}
}

// rtmpPublishNotify tells a waiting RTMP player that a publisher arrived:
// Stream Begin, then onStatus NetStream.Play.PublishNotify.
func rtmpPublishNotify(key streamKey, chunkSize int) *frame {
	b := appendUserControl(nil, ucStreamBegin, mediaStreamID)
	body := amf0AppendAll(nil, "onStatus", 0.0, nil,
		statusObject("status", "NetStream.Play.PublishNotify", key.String()+" is now published."))
	return &frame{rtmp: appendChunks(b, csidCommand, msgCommandAMF0, mediaStreamID, 0, body, chunkSize)}
}
