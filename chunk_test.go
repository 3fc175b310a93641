package main

// The RTMP chunk stream (Adobe RTMP 1.0 §5.3): the reader and the writer
// against a golden table, round trips, limits, and a fuzz target.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
)

// ---- Chunk stream golden table (Adobe RTMP 1.0 §5.3) ----

// bs returns its arguments, so that golden tables can spell bytes out
// field by field.
func bs(b ...byte) []byte { return b }

// joinBytes concatenates byte slices into a new one.
func joinBytes(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// seqBytes returns n bytes counting up from start (mod 256), so that a
// misplaced chunk shows in the payload.
func seqBytes(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func u32be(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// goldenMsg is a message of the chunk golden table and the chunk stream
// it travels on.
type goldenMsg struct {
	csid uint32
	rtmpMessage
}

func gmsg(csid uint32, typ uint8, streamID, ts uint32, payload []byte) goldenMsg {
	return goldenMsg{csid, rtmpMessage{Type: typ, StreamID: streamID, Time: ts, Payload: payload}}
}

// chunkCase is one entry of the golden table: bytes on the wire and the
// messages readMessage must return from them, in order.
type chunkCase struct {
	name string
	enc  []byte
	msgs []goldenMsg
	// err is what readMessage returns after msgs (checked with errors.Is);
	// nil means io.EOF, a clean end between messages.
	err error
	// writer: enc is exactly what appendChunks writes for msgs (a type 0
	// header, then type 3 continuations), at the chunk size in force: 128
	// until a Set Chunk Size in msgs changes it.
	writer bool
}

// errTruncated in a golden case accepts io.EOF or io.ErrUnexpectedEOF.
var errTruncated = errors.New("input ends inside a chunk")

var (
	goldP200 = seqBytes(200, 0)
	goldP150 = seqBytes(150, 0x80)
	goldP300 = seqBytes(300, 7)
)

var chunkGolden = []chunkCase{
	{
		name: "fmt 0, csid 3, one chunk",
		enc: joinBytes(
			bs(0x03),                   // basic header (§5.3.1.1): fmt 0, csid 3
			bs(0x00, 0x00, 0x64),       // timestamp 100 (§5.3.1.2.1)
			bs(0x00, 0x00, 0x04),       // message length 4
			bs(0x14),                   // message type id 20: AMF0 command
			bs(0x01, 0x00, 0x00, 0x00), // message stream id 1, little-endian
			[]byte("abcd"),             // chunk data
		),
		msgs:   []goldenMsg{gmsg(3, msgCommandAMF0, 1, 100, []byte("abcd"))},
		writer: true,
	},
	{
		name: "csid 2, the lowest 1-byte id: Window Acknowledgement Size",
		enc: joinBytes(
			bs(0x02),                   // fmt 0, csid 2 (protocol control, §5.4)
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x04),       // length 4
			bs(0x05),                   // type 5: Window Acknowledgement Size
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			bs(0x00, 0x4C, 0x4B, 0x40), // 5000000
		),
		msgs:   []goldenMsg{gmsg(2, msgWindowAckSize, 0, 0, u32be(5000000))},
		writer: true,
	},
	{
		name: "csid 63, the highest 1-byte id",
		enc: joinBytes(
			bs(0x3F),                   // fmt 0, csid 63
			bs(0x00, 0x00, 0x01),       // timestamp 1
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8: audio
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF),
		),
		msgs:   []goldenMsg{gmsg(63, msgAudio, 1, 1, bs(0xAF))},
		writer: true,
	},
	{
		name: "stream id is little-endian",
		enc: joinBytes(
			bs(0x05),                   // fmt 0, csid 5
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x12),                   // type 18: AMF0 data
			bs(0x04, 0x03, 0x02, 0x01), // stream id 0x01020304
			bs(0x05),                   // AMF0 null
		),
		msgs:   []goldenMsg{gmsg(5, msgDataAMF0, 0x01020304, 0, bs(0x05))},
		writer: true,
	},
	{
		name: "zero-length message",
		enc: joinBytes(
			bs(0x03),                   // fmt 0, csid 3
			bs(0x00, 0x00, 0x07),       // timestamp 7
			bs(0x00, 0x00, 0x00),       // length 0: no chunk data
			bs(0x09),                   // type 9: video
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
		),
		msgs:   []goldenMsg{gmsg(3, msgVideo, 1, 7, nil)},
		writer: true,
	},
	{
		name: "fmt 0 then fmt 3 continuation at chunk size 128",
		enc: joinBytes(
			bs(0x06),                   // fmt 0, csid 6
			bs(0x00, 0x00, 0x28),       // timestamp 40
			bs(0x00, 0x00, 0xC8),       // length 200
			bs(0x09),                   // type 9: video
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             // first chunk: 128 bytes
			bs(0xC6),                   // fmt 3, csid 6 (§5.3.1.2.4): no message header
			goldP200[128:],             // the other 72 bytes
		),
		msgs:   []goldenMsg{gmsg(6, msgVideo, 1, 40, goldP200)},
		writer: true,
	},
	{
		name: "2-byte basic header: csid 64",
		enc: joinBytes(
			bs(0x00, 0x00),             // fmt 0, csid field 0: csid = 64 + 0x00
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x03),       // length 3
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x01, 0x21),
		),
		msgs:   []goldenMsg{gmsg(64, msgAudio, 1, 0, bs(0xAF, 0x01, 0x21))},
		writer: true,
	},
	{
		name: "2-byte basic header: csid 319, with continuation",
		enc: joinBytes(
			bs(0x00, 0xFF),             // fmt 0, csid = 64 + 255
			bs(0x00, 0x01, 0x00),       // timestamp 256
			bs(0x00, 0x00, 0x82),       // length 130
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             //
			bs(0xC0, 0xFF),             // fmt 3, csid 319
			goldP200[128:130],          //
		),
		msgs:   []goldenMsg{gmsg(319, msgVideo, 1, 256, goldP200[:130])},
		writer: true,
	},
	{
		name: "3-byte basic header: csid 320",
		enc: joinBytes(
			bs(0x01, 0x00, 0x01),       // fmt 0, csid field 1: csid = 64 + 0x00 + 0x01*256
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x00),
		),
		msgs:   []goldenMsg{gmsg(320, msgAudio, 1, 0, bs(0xAF, 0x00))},
		writer: true,
	},
	{
		name: "3-byte basic header: csid 65599, the highest, with continuation",
		enc: joinBytes(
			bs(0x01, 0xFF, 0xFF),       // fmt 0, csid = 64 + 255 + 255*256
			bs(0x00, 0x00, 0x0A),       // timestamp 10
			bs(0x00, 0x00, 0x81),       // length 129
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             //
			bs(0xC1, 0xFF, 0xFF),       // fmt 3, csid 65599
			goldP200[128:129],          //
		),
		msgs:   []goldenMsg{gmsg(65599, msgVideo, 1, 10, goldP200[:129])},
		writer: true,
	},
	{
		name: "3-byte form of csid 64 is the same chunk stream as the 2-byte form",
		enc: joinBytes(
			bs(0x01, 0x00, 0x00),       // fmt 0, 3-byte form: csid = 64 + 0 + 0*256
			bs(0x00, 0x00, 0x05),       // timestamp 5
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAA),                   //
			bs(0x40, 0x00),             // fmt 1, 2-byte form: csid 64
			bs(0x00, 0x00, 0x0A),       // timestamp delta 10
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0xBB),
		),
		msgs: []goldenMsg{
			gmsg(64, msgAudio, 1, 5, bs(0xAA)),
			gmsg(64, msgAudio, 1, 15, bs(0xBB)),
		},
	},
	{
		name: "fmt 1: delta, length and type; stream id kept",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x03, 0xE8),       // timestamp 1000
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x07, 0x00, 0x00, 0x00), // stream id 7
			bs(0xAF, 0x01),             //
			bs(0x44),                   // fmt 1, csid 4 (§5.3.1.2.2)
			bs(0x00, 0x00, 0x28),       // timestamp delta 40
			bs(0x00, 0x00, 0x03),       // length 3
			bs(0x12),                   // type 18
			bs(0x05, 0x05, 0x05),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 7, 1000, bs(0xAF, 0x01)),
			gmsg(4, msgDataAMF0, 7, 1040, bs(0x05, 0x05, 0x05)),
		},
	},
	{
		name: "fmt 2: delta only; length, type and stream id kept",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x03, 0xE8),       // timestamp 1000
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x01),             //
			bs(0x84),                   // fmt 2, csid 4 (§5.3.1.2.3)
			bs(0x00, 0x00, 0x17),       // timestamp delta 23
			bs(0xAF, 0x02),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 1000, bs(0xAF, 0x01)),
			gmsg(4, msgAudio, 1, 1023, bs(0xAF, 0x02)),
		},
	},
	{
		name: "fmt 3 new message after fmt 2 reuses its delta",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x03, 0xE8),       // timestamp 1000
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x01),             //
			bs(0x84),                   // fmt 2, csid 4
			bs(0x00, 0x00, 0x17),       // delta 23
			bs(0xAF, 0x02),             //
			bs(0xC4),                   // fmt 3, csid 4: a new message, delta 23 again (§5.3.1.2.4)
			bs(0xAF, 0x03),             //
			bs(0xC4),                   // and again
			bs(0xAF, 0x04),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 1000, bs(0xAF, 0x01)),
			gmsg(4, msgAudio, 1, 1023, bs(0xAF, 0x02)),
			gmsg(4, msgAudio, 1, 1046, bs(0xAF, 0x03)),
			gmsg(4, msgAudio, 1, 1069, bs(0xAF, 0x04)),
		},
	},
	{
		name: "fmt 3 new message after fmt 1 reuses its delta and length",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x03, 0xE8),       // timestamp 1000
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x11),                   //
			bs(0x44),                   // fmt 1, csid 4
			bs(0x00, 0x00, 0x28),       // delta 40
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x09),                   // type 9
			bs(0x22, 0x22),             //
			bs(0xC4),                   // fmt 3: new message of 2 bytes, type 9, delta 40
			bs(0x33, 0x33),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 1000, bs(0x11)),
			gmsg(4, msgVideo, 1, 1040, bs(0x22, 0x22)),
			gmsg(4, msgVideo, 1, 1080, bs(0x33, 0x33)),
		},
	},
	{
		// After a type 0 header the spec leaves the delta of a type 3
		// message undefined; ffmpeg and librtmp take the type 0 timestamp
		// field as the delta (see readChunk).
		name: "fmt 3 new message after fmt 0 takes the fmt 0 field as delta",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x64),       // timestamp 100
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x11),                   //
			bs(0xC4),                   // fmt 3: new message, delta = 100
			bs(0x22),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 100, bs(0x11)),
			gmsg(4, msgAudio, 1, 200, bs(0x22)),
		},
	},
	{
		name: "extended timestamp on fmt 0",
		enc: joinBytes(
			bs(0x06),                   // fmt 0, csid 6
			bs(0xFF, 0xFF, 0xFF),       // timestamp field 0xFFFFFF: see extended timestamp
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x01, 0x02, 0x03, 0x04), // extended timestamp (§5.3.1.3) 0x01020304
			bs(0x17, 0x01),
		),
		msgs:   []goldenMsg{gmsg(6, msgVideo, 1, 0x01020304, bs(0x17, 0x01))},
		writer: true,
	},
	{
		name: "timestamp 0xFFFFFF itself is extended",
		enc: joinBytes(
			bs(0x06),                   // fmt 0, csid 6
			bs(0xFF, 0xFF, 0xFF),       // timestamp field 0xFFFFFF
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended timestamp 0x00FFFFFF
			bs(0x27),
		),
		msgs:   []goldenMsg{gmsg(6, msgVideo, 1, 0xFFFFFF, bs(0x27))},
		writer: true,
	},
	{
		name: "extended timestamp repeated on fmt 3 continuation chunks",
		enc: joinBytes(
			bs(0x06),                   // fmt 0, csid 6
			bs(0xFF, 0xFF, 0xFF),       // timestamp field 0xFFFFFF
			bs(0x00, 0x01, 0x04),       // length 260
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x12, 0x34, 0x56, 0x78), // extended timestamp 0x12345678
			goldP300[:128],             //
			bs(0xC6),                   // fmt 3, csid 6
			bs(0x12, 0x34, 0x56, 0x78), // extended timestamp again
			goldP300[128:256],          //
			bs(0xC6),                   // fmt 3, csid 6
			bs(0x12, 0x34, 0x56, 0x78), // extended timestamp again
			goldP300[256:260],
		),
		msgs:   []goldenMsg{gmsg(6, msgVideo, 1, 0x12345678, goldP300[:260])},
		writer: true,
	},
	{
		name: "fmt 1 with extended delta, then fmt 3 new message reusing it",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x11),                   //
			bs(0x44),                   // fmt 1, csid 4
			bs(0xFF, 0xFF, 0xFF),       // delta field 0xFFFFFF
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // extended delta 0x01000000
			bs(0x22),                   //
			bs(0xC4),                   // fmt 3: new message, same delta
			bs(0x01, 0x00, 0x00, 0x00), // extended timestamp, as the header before it had one
			bs(0x33),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 0, bs(0x11)),
			gmsg(4, msgAudio, 1, 0x01000000, bs(0x22)),
			gmsg(4, msgAudio, 1, 0x02000000, bs(0x33)),
		},
	},
	{
		name: "fmt 2 with extended delta, continuation and fmt 3 new message",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x0A),       // timestamp 10
			bs(0x00, 0x00, 0x81),       // length 129
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             //
			bs(0xC4),                   // fmt 3 continuation, no extended timestamp
			goldP200[128:129],          //
			bs(0x84),                   // fmt 2, csid 4
			bs(0xFF, 0xFF, 0xFF),       // delta field 0xFFFFFF
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended delta 0xFFFFFF
			goldP200[1:129],            //
			bs(0xC4),                   // fmt 3 continuation
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended timestamp
			goldP200[129:130],          //
			bs(0xC4),                   // fmt 3: new message, delta 0xFFFFFF again
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended timestamp
			goldP200[2:130],            //
			bs(0xC4),                   // fmt 3 continuation
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended timestamp
			goldP200[130:131],
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 10, goldP200[:129]),
			gmsg(4, msgAudio, 1, 10+0xFFFFFF, goldP200[1:130]),
			gmsg(4, msgAudio, 1, 10+2*0xFFFFFF, goldP200[2:131]),
		},
	},
	{
		name: "fmt 3 new message after an extended fmt 0 takes the whole timestamp as delta",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0xFF, 0xFF, 0xFF),       // timestamp field 0xFFFFFF
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x01, 0x00, 0x00, 0x00), // extended timestamp 0x01000000
			bs(0x11),                   //
			bs(0xC4),                   // fmt 3: new message
			bs(0x01, 0x00, 0x00, 0x00), // extended timestamp
			bs(0x22),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 0x01000000, bs(0x11)),
			gmsg(4, msgAudio, 1, 0x02000000, bs(0x22)),
		},
	},
	{
		name: "two chunk streams interleaved",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x05),       // timestamp 5
			bs(0x00, 0x00, 0xC8),       // length 200
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             // audio, first chunk
			bs(0x06),                   // fmt 0, csid 6
			bs(0x00, 0x00, 0x07),       // timestamp 7
			bs(0x00, 0x00, 0x96),       // length 150
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP150[:128],             // video, first chunk
			bs(0xC4),                   // fmt 3, csid 4
			goldP200[128:],             // audio complete
			bs(0xC6),                   // fmt 3, csid 6
			goldP150[128:],             // video complete
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 5, goldP200),
			gmsg(6, msgVideo, 1, 7, goldP150),
		},
	},
	{
		name: "Set Chunk Size 256, then a 300-byte message",
		enc: joinBytes(
			bs(0x02),                   // fmt 0, csid 2
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x04),       // length 4
			bs(0x01),                   // type 1: Set Chunk Size (§5.4.1)
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			bs(0x00, 0x00, 0x01, 0x00), // 256
			bs(0x03),                   // fmt 0, csid 3
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x01, 0x2C),       // length 300
			bs(0x14),                   // type 20
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			goldP300[:256],             // a chunk is now 256 bytes
			bs(0xC3),                   // fmt 3, csid 3
			goldP300[256:],
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(256)),
			gmsg(3, msgCommandAMF0, 0, 0, goldP300),
		},
		writer: true,
	},
	{
		name: "Set Chunk Size in the middle of a message applies to its next chunk",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x01, 0x2C),       // length 300
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP300[:128],             // chunk of 128
			bs(0x02),                   // fmt 0, csid 2
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x04),       // length 4
			bs(0x01),                   // type 1: Set Chunk Size
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			bs(0x00, 0x00, 0x01, 0x00), // 256
			bs(0xC4),                   // fmt 3, csid 4
			goldP300[128:],             // the other 172 bytes, in one chunk
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(256)),
			gmsg(4, msgAudio, 1, 0, goldP300),
		},
	},
	{
		name: "Set Chunk Size 0x7FFFFFFF, the largest",
		enc: joinBytes(
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0), // fmt 0, csid 2, length 4, Set Chunk Size
			bs(0x7F, 0xFF, 0xFF, 0xFF),                   // 0x7FFFFFFF
			bs(0x03),                                     // fmt 0, csid 3
			bs(0x00, 0x00, 0x00),                         // timestamp 0
			bs(0x00, 0x01, 0x2C),                         // length 300
			bs(0x14),                                     // type 20
			bs(0x00, 0x00, 0x00, 0x00),                   // stream id 0
			goldP300,                                     // one chunk
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(0x7FFFFFFF)),
			gmsg(3, msgCommandAMF0, 0, 0, goldP300),
		},
		writer: true,
	},
	{
		name: "Set Chunk Size with the top bit set is masked to 31 bits",
		enc: joinBytes(
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0),          // fmt 0, csid 2, length 4, Set Chunk Size
			bs(0x80, 0x00, 0x01, 0x00),                            // 0x80000100: the bit must be 0 (§5.4.1); size 256
			bs(0x03, 0, 0, 0, 0x00, 0x01, 0x2C, 0x14, 0, 0, 0, 0), // fmt 0, csid 3, length 300, type 20
			goldP300[:256],
			bs(0xC3), // fmt 3, csid 3
			goldP300[256:],
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(0x80000100)),
			gmsg(3, msgCommandAMF0, 0, 0, goldP300),
		},
		writer: true,
	},
	{
		name: "Set Chunk Size 1",
		enc: joinBytes(
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0), // fmt 0, csid 2, length 4, Set Chunk Size
			bs(0x00, 0x00, 0x00, 0x01),                   // 1
			bs(0x03, 0, 0, 9, 0, 0, 3, 0x14, 0, 0, 0, 0), // fmt 0, csid 3, timestamp 9, length 3, type 20
			bs('a'),
			bs(0xC3), // fmt 3, csid 3
			bs('b'),
			bs(0xC3), // fmt 3, csid 3
			bs('c'),
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(1)),
			gmsg(3, msgCommandAMF0, 0, 9, []byte("abc")),
		},
		writer: true,
	},
	{
		name: "Abort Message drops a partial message",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0xC8),       // length 200
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             // first chunk; the rest never comes
			bs(0x02),                   // fmt 0, csid 2
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x04),       // length 4
			bs(0x02),                   // type 2: Abort Message (§5.4.2)
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			bs(0x00, 0x00, 0x00, 0x04), // chunk stream id 4
			bs(0x04),                   // fmt 0, csid 4: a new message
			bs(0x00, 0x00, 0x14),       // timestamp 20
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x01),
		),
		msgs: []goldenMsg{
			gmsg(2, msgAbort, 0, 0, u32be(4)),
			gmsg(4, msgAudio, 1, 20, bs(0xAF, 0x01)),
		},
	},
	{
		name: "after Abort a fmt 3 chunk starts the message over",
		enc: joinBytes(
			bs(0x04, 0, 0, 0, 0, 0, 0x81, 0x08, 1, 0, 0, 0), // fmt 0, csid 4, length 129, type 8, stream 1
			goldP200[:128], // first chunk
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x02, 0, 0, 0, 0), // fmt 0, csid 2, length 4, Abort
			bs(0x00, 0x00, 0x00, 0x04),                   // chunk stream id 4
			bs(0xC4),                                     // fmt 3, csid 4: a new message of 129 bytes
			goldP200[50:178],                             //
			bs(0xC4),                                     // fmt 3 continuation
			goldP200[178:179],
		),
		msgs: []goldenMsg{
			gmsg(2, msgAbort, 0, 0, u32be(4)),
			gmsg(4, msgAudio, 1, 0, goldP200[50:179]),
		},
	},
	{
		name: "Abort of a chunk stream never used is harmless",
		enc: joinBytes(
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x02, 0, 0, 0, 0), // fmt 0, csid 2, length 4, Abort
			bs(0x00, 0x00, 0x00, 0x09),                   // chunk stream id 9
			bs(0x03, 0, 0, 0, 0, 0, 1, 0x14, 0, 0, 0, 0), // fmt 0, csid 3, length 1, type 20
			bs(0x05),
		),
		msgs: []goldenMsg{
			gmsg(2, msgAbort, 0, 0, u32be(9)),
			gmsg(3, msgCommandAMF0, 0, 0, bs(0x05)),
		},
		writer: true,
	},
	{
		name: "a new fmt 0 header in the middle of a message replaces it",
		enc: joinBytes(
			bs(0x04, 0, 0, 0, 0, 0, 0xC8, 0x08, 1, 0, 0, 0), // fmt 0, csid 4, length 200, type 8
			goldP200[:128], // first chunk
			bs(0x04, 0, 0, 3, 0, 0, 0x02, 0x08, 1, 0, 0, 0), // fmt 0, csid 4, timestamp 3, length 2
			bs(0xAF, 0x01),
		),
		msgs: []goldenMsg{gmsg(4, msgAudio, 1, 3, bs(0xAF, 0x01))},
	},

	// Errors.
	{
		name: "fmt 3 on a chunk stream with no header",
		enc:  bs(0xC3, 0x00), // fmt 3, csid 3: nothing to continue
		err:  errRTMPNoHeader,
	},
	{
		name: "fmt 1 on a chunk stream with no header",
		enc:  bs(0x43, 0, 0, 0, 0, 0, 1, 0x08, 0), // fmt 1, csid 3
		err:  errRTMPNoHeader,
	},
	{
		name: "fmt 2 on a 2-byte chunk stream with no header",
		enc: joinBytes(
			bs(0x03, 0, 0, 0, 0, 0, 1, 0x14, 0, 0, 0, 0, 0x05), // csid 3 has a header, csid 69 does not
			bs(0x80, 0x05, 0, 0, 0),                            // fmt 2, csid 64+5
		),
		msgs: []goldenMsg{gmsg(3, msgCommandAMF0, 0, 0, bs(0x05))},
		err:  errRTMPNoHeader,
	},
	tooManyChunkStreamsCase(),
	{
		name: "Set Chunk Size 0",
		enc:  bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x00),
		err:  errRTMPChunkSize,
	},
	{
		name: "Set Chunk Size 0x80000000 is 0 once masked",
		enc:  bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0x80, 0x00, 0x00, 0x00),
		err:  errRTMPChunkSize,
	},
	{
		name: "Set Chunk Size shorter than 4 bytes",
		enc:  bs(0x02, 0, 0, 0, 0, 0, 3, 0x01, 0, 0, 0, 0, 0x00, 0x01, 0x00),
		err:  errRTMPProtocol,
	},
	{
		name: "input ends inside a 2-byte basic header",
		enc:  bs(0x00),
		err:  errTruncated,
	},
	{
		name: "input ends inside a message header",
		enc:  bs(0x03, 0x00, 0x00, 0x00, 0x00),
		err:  errTruncated,
	},
	{
		name: "input ends inside an extended timestamp",
		enc:  bs(0x03, 0xFF, 0xFF, 0xFF, 0, 0, 1, 0x14, 0, 0, 0, 0, 0x01, 0x02),
		err:  errTruncated,
	},
	{
		name: "input ends inside chunk data",
		enc:  bs(0x03, 0, 0, 0, 0, 0, 4, 0x14, 0, 0, 0, 0, 'a', 'b'),
		err:  errTruncated,
	},
	{
		name: "input ends between the chunks of a message",
		enc:  joinBytes(bs(0x03, 0, 0, 0, 0, 0, 0x81, 0x14, 0, 0, 0, 0), goldP200[:128]),
		err:  errTruncated,
	},
}

// tooManyChunkStreamsCase uses maxChunkStreams chunk streams, 2 to 65,
// then opens one more.
func tooManyChunkStreamsCase() chunkCase {
	tc := chunkCase{name: "one chunk stream more than maxChunkStreams", err: errRTMPChunkStreams}
	for csid := uint32(2); csid < 2+maxChunkStreams; csid++ {
		tc.enc = appendChunks(tc.enc, csid, msgAudio, 1, csid, nil, 128)
		tc.msgs = append(tc.msgs, gmsg(csid, msgAudio, 1, csid, nil))
	}
	tc.enc = append(tc.enc,
		0x00, 0x02, // fmt 0, csid 64+2 = 66: the 65th chunk stream
		0, 0, 0, 0, 0, 1, 0x08, 1, 0, 0, 0, 0xAF)
	return tc
}

// encodeGolden encodes msgs the way our writer does, following the Set
// Chunk Size messages among them.
func encodeGolden(msgs []goldenMsg) []byte {
	size := 128
	var out []byte
	for _, m := range msgs {
		out = appendChunks(out, m.csid, m.Type, m.StreamID, m.Time, m.Payload, size)
		if m.Type == msgSetChunkSize {
			size = int(binary.BigEndian.Uint32(m.Payload) & 0x7FFFFFFF)
		}
	}
	return out
}

func describeMessage(m rtmpMessage) string {
	p := m.Payload
	if len(p) > 16 {
		return fmt.Sprintf("{type %d stream %d time %#x payload(%d) % x...}", m.Type, m.StreamID, m.Time, len(p), p[:16])
	}
	return fmt.Sprintf("{type %d stream %d time %#x payload % x}", m.Type, m.StreamID, m.Time, p)
}

func sameMessage(a, b rtmpMessage) bool {
	return a.Type == b.Type && a.StreamID == b.StreamID && a.Time == b.Time && bytes.Equal(a.Payload, b.Payload)
}

// checkPending checks that the reader's count of bytes held in partial
// messages is the sum of its buffers.
func checkPending(t testing.TB, cr *chunkReader) {
	t.Helper()
	sum := 0
	for _, cs := range cr.streams {
		sum += len(cs.buf)
	}
	if cr.pending != sum {
		t.Fatalf("chunkReader.pending = %d; want %d, the bytes in partial messages", cr.pending, sum)
	}
}

func matchErr(err, want error) bool {
	if want == errTruncated {
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	}
	return errors.Is(err, want)
}

// TestChunkReaderGolden decodes every golden case.
func TestChunkReaderGolden(t *testing.T) {
	for _, tc := range chunkGolden {
		t.Run(tc.name, func(t *testing.T) {
			cr := newChunkReader(bufio.NewReader(bytes.NewReader(tc.enc)))
			for i, want := range tc.msgs {
				got, err := cr.readMessage()
				if err != nil {
					t.Fatalf("message %d: readMessage = %v; want %s", i, err, describeMessage(want.rtmpMessage))
				}
				if !sameMessage(got, want.rtmpMessage) {
					t.Fatalf("message %d: readMessage = %s; want %s", i, describeMessage(got), describeMessage(want.rtmpMessage))
				}
				checkPending(t, cr)
			}
			want := tc.err
			if want == nil {
				want = io.EOF
			}
			if msg, err := cr.readMessage(); !matchErr(err, want) {
				t.Fatalf("after %d messages: readMessage = %s, %v; want error %v", len(tc.msgs), describeMessage(msg), err, want)
			}
			if tc.err == nil {
				if got := cr.bytesRead.Load(); got != uint64(len(tc.enc)) {
					t.Errorf("bytesRead = %d; want %d", got, len(tc.enc))
				}
			}
		})
	}
}

// TestAppendChunksGolden encodes the golden cases that are in our
// writer's form and checks chunksLen against the output.
func TestAppendChunksGolden(t *testing.T) {
	for _, tc := range chunkGolden {
		if !tc.writer {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			if got := encodeGolden(tc.msgs); !bytes.Equal(got, tc.enc) {
				t.Errorf("appendChunks =\n% x\nwant\n% x", got, tc.enc)
			}
			size := 128
			for _, m := range tc.msgs {
				n := len(appendChunks(nil, m.csid, m.Type, m.StreamID, m.Time, m.Payload, size))
				if got := chunksLen(m.csid, m.Time, len(m.Payload), size); got != n {
					t.Errorf("chunksLen(%d, %#x, %d, %d) = %d; want %d", m.csid, m.Time, len(m.Payload), size, got, n)
				}
				if m.Type == msgSetChunkSize {
					size = int(binary.BigEndian.Uint32(m.Payload) & 0x7FFFFFFF)
				}
			}
		})
	}
}

// TestAppendChunksRoundTrip: whatever the chunk stream id, timestamp,
// length and chunk size, the reader gets back what appendChunks wrote.
func TestAppendChunksRoundTrip(t *testing.T) {
	for _, csid := range []uint32{2, 63, 64, 319, 320, 65599} {
		for _, ts := range []uint32{0, 1, 0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF} {
			for _, n := range []int{0, 1, 127, 128, 129, 256, 1000} {
				for _, size := range []int{1, 128, 129, 4096} {
					payload := seqBytes(n, byte(ts))
					enc := appendChunks(nil, csid, msgVideo, 1, ts, payload, size)
					if got := chunksLen(csid, ts, n, size); got != len(enc) {
						t.Fatalf("chunksLen(%d, %#x, %d, %d) = %d; want %d", csid, ts, n, size, got, len(enc))
					}
					cr := newChunkReader(bufio.NewReader(bytes.NewReader(enc)))
					cr.chunkSize = uint32(size)
					got, err := cr.readMessage()
					want := rtmpMessage{Type: msgVideo, StreamID: 1, Time: ts, Payload: payload}
					if err != nil || !sameMessage(got, want) {
						t.Fatalf("csid %d ts %#x len %d chunk %d: readMessage = %s, %v; want %s",
							csid, ts, n, size, describeMessage(got), err, describeMessage(want))
					}
				}
			}
		}
	}
}

// TestChunkReaderMediaOwnArrays: audio and video come each in an array
// of its own, laid out as its FLV tag (Tag), which later reads leave
// alone, whatever the chunk size and lengths (across the 64 KiB steps the
// reader grows by); other messages reuse the reader's buffer.
func TestChunkReaderMediaOwnArrays(t *testing.T) {
	for _, size := range []int{128, 4096, 60000, 1 << 20} {
		var enc []byte
		lens := []int{0, 1, 5700, 60000, 65536, 65537, 200_000, 300}
		for i, n := range lens {
			enc = appendChunks(enc, 6, msgVideo, 1, uint32(40*i), seqBytes(n, byte(i)), size)
			enc = appendChunks(enc, 3, msgCommandAMF0, 0, 0, seqBytes(20, byte(i)), size)
		}
		cr := newChunkReader(bufio.NewReader(bytes.NewReader(enc)))
		cr.chunkSize = uint32(size)
		var got []rtmpMessage
		var command []byte
		for range 2 * len(lens) {
			m, err := cr.readMessage()
			if err != nil {
				t.Fatalf("chunk size %d: %v", size, err)
			}
			if m.Type != msgVideo {
				if m.Tag != nil {
					t.Fatalf("chunk size %d: a command came with a Tag", size)
				}
				if command != nil && &command[:1][0] != &m.Payload[:1][0] {
					t.Errorf("chunk size %d: commands in a new array each time", size)
				}
				command = m.Payload
				continue
			}
			got = append(got, m)
		}
		for i, m := range got {
			n := lens[i]
			if n == 0 {
				continue // nothing to keep: the copying path takes it
			}
			if !bytes.Equal(m.Payload, seqBytes(n, byte(i))) {
				t.Fatalf("chunk size %d: message %d changed after later reads", size, i)
			}
			if len(m.Tag) != flvTagHeaderLen+n+4 || &m.Tag[flvTagHeaderLen] != &m.Payload[0] {
				t.Fatalf("chunk size %d: message %d: Tag of %d bytes around its %d-byte payload; want %d",
					size, i, len(m.Tag), n, flvTagHeaderLen+n+4)
			}
			want := appendFLVTag(nil, msgVideo, m.Time, m.Payload)
			if tag := fillFLVTag(m.Tag, msgVideo, m.Time); !bytes.Equal(tag, want) {
				t.Fatalf("chunk size %d: message %d: fillFLVTag made % x; want % x", size, i, tag[:16], want[:16])
			}
		}
	}
}

// TestPublisherKeepsTagArray: a media message read by the chunk reader
// becomes its frame's FLV tag without a copy.
func TestPublisherKeepsTagArray(t *testing.T) {
	enc := appendChunks(nil, 6, msgVideo, 1, 40, testVideo(true, 5000), 4096)
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(enc)))
	cr.chunkSize = 4096
	m, err := cr.readMessage()
	if err != nil {
		t.Fatal(err)
	}
	var ps publishState
	f, _ := ps.encodeIn(m.Type, m.Time, m.Payload, m.Tag, 60000)
	if f == nil || &f.flv[0] != &m.Tag[0] || !bytes.Equal(f.flv, appendFLVTag(nil, msgVideo, 40, m.Payload)) {
		t.Fatal("the frame's FLV tag is not the message's array, made into the tag")
	}
}

// zeroReader reads zeros forever.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestChunkReaderPendingLimit: partial messages on several chunk streams
// may not hold more than maxPendingBytes together. The check is made
// before the chunk's data is read.
func TestChunkReaderPendingLimit(t *testing.T) {
	const l = 0x7FFFFF // maxMessageLen - 1: the longest message allowed
	if maxMessageLen != l+1 {
		t.Fatalf("maxMessageLen changed to %d: update this test", maxMessageLen)
	}
	setSize := func(n uint32) []byte { return appendUint32Control(nil, msgSetChunkSize, n) }
	header := func(csid byte) []byte {
		return bs(csid, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0x09, 1, 0, 0, 0) // fmt 0, length l, video
	}
	parts := []io.Reader{bytes.NewReader(setSize(l - 1))}
	for csid := byte(4); csid < 8; csid++ { // four messages, each one byte short of complete
		parts = append(parts, bytes.NewReader(header(csid)), io.LimitReader(zeroReader{}, l-1))
	}
	parts = append(parts, bytes.NewReader(joinBytes(setSize(0x7FFFFFFF), header(8)))) // csid 8 would add l
	cr := newChunkReader(bufio.NewReader(io.MultiReader(parts...)))
	for i := range 2 {
		msg, err := cr.readMessage()
		if err != nil || msg.Type != msgSetChunkSize {
			t.Fatalf("message %d: readMessage = %s, %v; want Set Chunk Size", i, describeMessage(msg), err)
		}
	}
	if _, err := cr.readMessage(); !errors.Is(err, errRTMPPendingBytes) {
		t.Fatalf("readMessage = %v; want errRTMPPendingBytes", err)
	}
	if want := 4 * (l - 1); cr.pending != want {
		t.Errorf("pending = %d; want %d", cr.pending, want)
	}
}

// TestChunkReaderAllocatesWhatArrives: a message header claiming 8 MB
// followed by 10 bytes must not make the reader allocate 16 MB, whatever
// the chunk size the peer set (readChunk: "a peer can't make us allocate
// for a length it never sends").
func TestChunkReaderAllocatesWhatArrives(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix []byte
	}{
		{"chunk size 128", nil},
		{"chunk size 65536", appendUint32Control(nil, msgSetChunkSize, 65536)},
		{"chunk size 0xFFFFFF", appendUint32Control(nil, msgSetChunkSize, 0xFFFFFF)},
		{"chunk size 0x7FFFFFFF", appendUint32Control(nil, msgSetChunkSize, 0x7FFFFFFF)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := joinBytes(tc.prefix,
				bs(0x06),                   // fmt 0, csid 6
				bs(0x00, 0x00, 0x00),       // timestamp 0
				bs(0x7F, 0xFF, 0xFF),       // length 8 MiB - 1, the most allowed
				bs(0x09),                   // type 9
				bs(0x01, 0x00, 0x00, 0x00), // stream id 1
				seqBytes(10, 0),            // and only 10 bytes of it
			)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			cr := newChunkReader(bufio.NewReader(bytes.NewReader(enc)))
			var err error
			for i := 0; err == nil && i < 10; i++ {
				_, err = cr.readMessage()
			}
			runtime.ReadMemStats(&after)
			if !matchErr(err, errTruncated) {
				t.Errorf("readMessage = %v; want a truncation error", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("reading %d bytes allocated %d bytes; want well under 1 MiB", len(enc), n)
			}
		})
	}
}

// ---- Fuzz targets ----

// chunkSeeds are the golden inputs plus session-shaped byte streams.
func chunkSeeds() [][]byte {
	var seeds [][]byte
	for _, tc := range chunkGolden {
		seeds = append(seeds, tc.enc)
	}
	for _, s := range rtmpSessionSeeds() {
		seeds = append(seeds, s)
	}
	return seeds
}

// FuzzChunkReader reads messages from arbitrary bytes: no panic, no
// message longer than the input, and the reader's byte accounting holds.
func FuzzChunkReader(f *testing.F) {
	for _, s := range chunkSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := newChunkReader(bufio.NewReader(bytes.NewReader(data)))
		total := 0
		for range 10000 {
			msg, err := cr.readMessage()
			if err != nil {
				break
			}
			total += len(msg.Payload)
			if msg.Tag != nil && (len(msg.Tag) != flvTagHeaderLen+len(msg.Payload)+4 ||
				len(msg.Payload) > 0 && &msg.Tag[flvTagHeaderLen] != &msg.Payload[0]) {
				t.Fatalf("a %d-byte Tag around a %d-byte payload", len(msg.Tag), len(msg.Payload))
			}
			if total > len(data) {
				t.Fatalf("messages carry %d bytes; the input has %d", total, len(data))
			}
			checkPending(t, cr)
		}
		if n := cr.bytesRead.Load(); n > uint64(len(data)) {
			t.Fatalf("bytesRead = %d; the input has %d", n, len(data))
		}
	})
}
