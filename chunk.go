package main

// The RTMP chunk stream (Adobe RTMP 1.0 §5.3): reassembling messages from
// the chunks of one connection, with every length a peer announces
// bounded, and encoding messages as chunks, with the protocol control
// (§5.4) and user control (§7.1.7) messages built from them.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// RTMP message type ids (§5.4, §7.1).
const (
	msgSetChunkSize     = 1
	msgAbort            = 2
	msgAck              = 3
	msgUserControl      = 4
	msgWindowAckSize    = 5
	msgSetPeerBandwidth = 6
	msgAudio            = 8
	msgVideo            = 9
	msgDataAMF3         = 15
	msgCommandAMF3      = 17
	msgDataAMF0         = 18
	msgCommandAMF0      = 20
)

// User control event types (§7.1.7).
const (
	ucStreamBegin  = 0
	ucStreamEOF    = 1
	ucSetBufferLen = 3
	ucPingRequest  = 6
	ucPingResponse = 7
)

// Chunk stream ids we send on. 2 is reserved for protocol control (§5.3.1.1).
const (
	csidControl = 2
	csidCommand = 3
	csidAudio   = 4
	csidData    = 5
	csidVideo   = 6
)

// Limits on what a peer may make us hold (§5.3: the chunk stream's own
// fields would allow far more).
const (
	maxMessageLen   = 8 << 20  // 30 times a large 4K keyframe; the 24-bit field would allow 16 MiB
	maxChunkStreams = 64       // distinct chunk stream ids one connection may use
	maxPendingBytes = 32 << 20 // sum of partly received messages on one connection
)

var (
	errRTMPMessageTooLong = errors.New("rtmp: message longer than limit")
	errRTMPChunkStreams   = errors.New("rtmp: too many chunk streams")
	errRTMPPendingBytes   = errors.New("rtmp: too many bytes in partial messages")
	errRTMPChunkSize      = errors.New("rtmp: invalid chunk size")
	errRTMPNoHeader       = errors.New("rtmp: continuation chunk on a chunk stream with no header")
)

// ---- Reading (§5.3.1, §5.3.2) ----

// rtmpMessage is one reassembled message. Payload is only valid until the
// next call to readMessage on the same reader, but for audio and video:
// theirs is in Tag, an array of their own that the caller keeps.
type rtmpMessage struct {
	Type     uint8
	StreamID uint32
	Time     uint32
	Payload  []byte
	// Tag, for audio and video, holds Payload with room for an FLV tag
	// header before it and PreviousTagSize after it, so that the hub keeps
	// the message as its FLV tag without a copy (output.go) and a
	// publisher holds no reassembly buffer between its frames.
	Tag []byte
}

// chunkStream is the per-csid state the header compression refers back to.
type chunkStream struct {
	started   bool   // a type 0 header has been seen
	extended  bool   // the last type 0/1/2 header used an extended timestamp
	timeField uint32 // the last timestamp field: absolute (type 0) or delta
	time      uint32 // timestamp of the current/last message
	length    uint32
	typ       uint8
	streamID  uint32
	buf       []byte // the message being reassembled
	tag       []byte // the array buf lies in, for audio and video (rtmpMessage.Tag)
}

// chunkReader reassembles messages from the chunk stream of one connection.
type chunkReader struct {
	r         *bufio.Reader
	chunkSize uint32
	streams   map[uint32]*chunkStream
	pending   int           // bytes held in partial messages
	bytesRead atomic.Uint64 // read by the API while the connection runs
	scratch   [16]byte
}

func newChunkReader(r *bufio.Reader) *chunkReader {
	return &chunkReader{r: r, chunkSize: 128, streams: map[uint32]*chunkStream{}}
}

func (cr *chunkReader) read(n int) ([]byte, error) {
	b := cr.scratch[:n]
	if _, err := io.ReadFull(cr.r, b); err != nil {
		return nil, err
	}
	cr.bytesRead.Add(uint64(n))
	return b, nil
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }

// readMessage reads chunks until a message is complete. Protocol control
// messages that change the reader itself (Set Chunk Size, Abort) are
// applied here and also returned, so the caller can log or count them.
func (cr *chunkReader) readMessage() (rtmpMessage, error) {
	for {
		msg, done, err := cr.readChunk()
		if err != nil {
			return rtmpMessage{}, err
		}
		if !done {
			continue
		}
		switch msg.Type {
		case msgSetChunkSize:
			if len(msg.Payload) < 4 {
				return msg, fmt.Errorf("%w: short Set Chunk Size", errRTMPProtocol)
			}
			// §5.4.1: the top bit must be zero; 1..0x7FFFFFFF is valid.
			size := binary.BigEndian.Uint32(msg.Payload) & 0x7FFFFFFF
			if size == 0 {
				return msg, fmt.Errorf("%w: 0", errRTMPChunkSize)
			}
			cr.chunkSize = size
		case msgAbort:
			if len(msg.Payload) >= 4 {
				cr.abort(binary.BigEndian.Uint32(msg.Payload))
			}
		}
		return msg, nil
	}
}

// abort drops the partial message on a chunk stream (§5.4.2).
func (cr *chunkReader) abort(csid uint32) {
	if cs := cr.streams[csid]; cs != nil {
		cr.pending -= len(cs.buf)
		cs.buf = cs.buf[:0]
	}
}

func (cr *chunkReader) readChunk() (msg rtmpMessage, done bool, err error) {
	// §5.3.1.1 Chunk Basic Header: fmt in the top 2 bits, csid in the
	// low 6; 0 and 1 mean a 1- or 2-byte extension.
	b, err := cr.read(1)
	if err != nil {
		return msg, false, err
	}
	format := b[0] >> 6
	csid := uint32(b[0] & 0x3F)
	switch csid {
	case 0:
		if b, err = cr.read(1); err != nil {
			return msg, false, err
		}
		csid = 64 + uint32(b[0])
	case 1:
		if b, err = cr.read(2); err != nil {
			return msg, false, err
		}
		csid = 64 + uint32(b[0]) + uint32(b[1])<<8
	}
	cs := cr.streams[csid]
	if cs == nil {
		if len(cr.streams) >= maxChunkStreams {
			return msg, false, fmt.Errorf("%w (%d)", errRTMPChunkStreams, maxChunkStreams)
		}
		cs = &chunkStream{}
		cr.streams[csid] = cs
	}
	if format != 0 && !cs.started {
		return msg, false, fmt.Errorf("%w (csid %d, fmt %d)", errRTMPNoHeader, csid, format)
	}

	// §5.3.1.2 Chunk Message Header, 11/7/3/0 bytes for fmt 0/1/2/3.
	newMessage := len(cs.buf) == 0
	switch format {
	case 0:
		if b, err = cr.read(11); err != nil {
			return msg, false, err
		}
		cs.timeField = be24(b[0:3])
		cs.length = be24(b[3:6])
		cs.typ = b[6]
		cs.streamID = binary.LittleEndian.Uint32(b[7:11]) // §5.3.1.2.1: little-endian
	case 1:
		if b, err = cr.read(7); err != nil {
			return msg, false, err
		}
		cs.timeField = be24(b[0:3])
		cs.length = be24(b[3:6])
		cs.typ = b[6]
	case 2:
		if b, err = cr.read(3); err != nil {
			return msg, false, err
		}
		cs.timeField = be24(b[0:3])
	}
	if format != 3 {
		cs.extended = cs.timeField == 0xFFFFFF
		if !newMessage {
			// A new header in the middle of a message: the peer gave up on
			// the old one. Start over rather than splice garbage.
			cr.pending -= len(cs.buf)
			cs.buf = cs.buf[:0]
			newMessage = true
		}
	}
	// §5.3.1.3 Extended Timestamp: present when the field is 0xFFFFFF,
	// including on type 3 chunks that follow such a header.
	if cs.extended {
		if b, err = cr.read(4); err != nil {
			return msg, false, err
		}
		if format != 3 {
			cs.timeField = binary.BigEndian.Uint32(b)
		}
	}
	if newMessage {
		cs.started = true
		if format == 0 {
			cs.time = cs.timeField
		} else {
			// A delta; for type 3 after a type 0 it is the type 0's field,
			// which is how ffmpeg and librtmp read and write it.
			cs.time += cs.timeField
		}
		if cs.length > maxMessageLen {
			return msg, false, fmt.Errorf("%w: %d > %d", errRTMPMessageTooLong, cs.length, maxMessageLen)
		}
		if isMedia(cs.typ) || cs.tag != nil {
			cs.buf, cs.tag = nil, nil // each media message gets its own array
		}
	}

	// Chunk Data: up to chunkSize bytes of the message. Read straight into
	// the message buffer, growing it as bytes arrive, so a peer can't make
	// us allocate for a length it never sends.
	n := cs.length - uint32(len(cs.buf))
	n = min(n, cr.chunkSize)
	if cr.pending+int(n) > maxPendingBytes {
		return msg, false, fmt.Errorf("%w (%d)", errRTMPPendingBytes, maxPendingBytes)
	}
	grow := growLen
	if isMedia(cs.typ) {
		grow = cs.growTag
	}
	var err2 error
	if cs.buf, err2 = readGrowing(cr.r, cs.buf, int(n), grow); err2 != nil {
		return msg, false, err2
	}
	cr.bytesRead.Add(uint64(n))
	cr.pending += int(n)
	if uint32(len(cs.buf)) < cs.length {
		return msg, false, nil
	}
	msg = rtmpMessage{Type: cs.typ, StreamID: cs.streamID, Time: cs.time, Payload: cs.buf, Tag: cs.tag}
	cr.pending -= len(cs.buf)
	cs.buf = cs.buf[:0]
	if cs.tag != nil {
		cs.buf, cs.tag = nil, nil // the caller's now
	}
	return msg, true, nil
}

func isMedia(typ uint8) bool { return typ == msgAudio || typ == msgVideo }

// growTag is growLen for a media message: its array is its own, with
// room for an FLV tag header before the payload and PreviousTagSize after
// it (rtmpMessage.Tag). It grows by at least 64 KiB, so that a message in
// small chunks is not copied at every one, and never past the announced
// length, so that the array ends up the tag's exact size.
func (cs *chunkStream) growTag(b []byte, n int) []byte {
	if cs.tag == nil || cap(b)-len(b) < n {
		size := min(max(2*cap(b), len(b)+n, 64<<10), int(cs.length))
		tag := make([]byte, flvTagHeaderLen+size+4)
		nb := tag[flvTagHeaderLen : flvTagHeaderLen+len(b) : flvTagHeaderLen+size]
		copy(nb, b)
		cs.tag, b = tag, nb
	}
	return b[:len(b)+n]
}

// readGrowing appends n bytes from r to b, growing b (growLen, or
// chunkStream.growTag) in steps of at most 64 KiB as the bytes arrive, so
// that a length a peer announces costs memory only as the peer really
// sends it.
func readGrowing(r io.Reader, b []byte, n int, grow func([]byte, int) []byte) ([]byte, error) {
	for n > 0 {
		step := min(n, 64<<10)
		start := len(b)
		b = grow(b, step)
		if _, err := io.ReadFull(r, b[start:]); err != nil {
			return b[:start], err
		}
		n -= step
	}
	return b, nil
}

// growLen extends b by n bytes, reusing its capacity when it can.
func growLen(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, max(2*cap(b), len(b)+n))
	copy(nb, b)
	return nb
}

// ---- Writing ----

// appendChunks encodes one message as chunks of at most chunkSize bytes:
// a type 0 header, then type 3 headers for the continuation chunks. Every
// message starts with a full header so that the same bytes can be sent to
// any player, whatever that player received before.
func appendChunks(dst []byte, csid uint32, typ uint8, streamID, ts uint32, payload []byte, chunkSize int) []byte {
	dst = appendChunkHeader(dst, csid, typ, streamID, ts, len(payload))
	field := min(ts, 0xFFFFFF)
	for {
		k := min(len(payload), chunkSize)
		dst = append(dst, payload[:k]...)
		payload = payload[k:]
		if len(payload) == 0 {
			return dst
		}
		dst = appendBasicHeader(dst, 3, csid)
		if field == 0xFFFFFF {
			dst = binary.BigEndian.AppendUint32(dst, ts)
		}
	}
}

// appendChunkHeader appends the first chunk's header of an n-byte message:
// basic header, type 0 message header (§5.3.1.2.1), extended timestamp.
func appendChunkHeader(dst []byte, csid uint32, typ uint8, streamID, ts uint32, n int) []byte {
	dst = appendBasicHeader(dst, 0, csid)
	field := min(ts, 0xFFFFFF)
	dst = append(dst, byte(field>>16), byte(field>>8), byte(field))
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n), typ)
	dst = binary.LittleEndian.AppendUint32(dst, streamID)
	if field == 0xFFFFFF {
		dst = binary.BigEndian.AppendUint32(dst, ts)
	}
	return dst
}

// chunksLen is the length appendChunks will produce.
func chunksLen(csid uint32, ts uint32, n, chunkSize int) int {
	basic := 1
	if csid >= 64+256 {
		basic = 3
	} else if csid >= 64 {
		basic = 2
	}
	ext := 0
	if ts >= 0xFFFFFF {
		ext = 4
	}
	chunks := max(1, (n+chunkSize-1)/chunkSize)
	return basic + 11 + ext + n + (chunks-1)*(basic+ext)
}

func appendBasicHeader(dst []byte, format uint8, csid uint32) []byte {
	switch {
	case csid < 64:
		return append(dst, format<<6|byte(csid))
	case csid < 64+256:
		return append(dst, format<<6, byte(csid-64))
	default:
		return append(dst, format<<6|1, byte(csid-64), byte((csid-64)>>8))
	}
}

func appendControl(dst []byte, typ uint8, payload []byte) []byte {
	return appendChunks(dst, csidControl, typ, 0, 0, payload, 128)
}

func appendUint32Control(dst []byte, typ uint8, v uint32) []byte {
	return appendControl(dst, typ, binary.BigEndian.AppendUint32(nil, v))
}

// appendUserControl encodes a user control message (§7.1.7) with a 4-byte
// argument (a stream id or a timestamp).
func appendUserControl(dst []byte, event uint16, arg uint32) []byte {
	p := binary.BigEndian.AppendUint16(nil, event)
	p = binary.BigEndian.AppendUint32(p, arg)
	return appendControl(dst, msgUserControl, p)
}
