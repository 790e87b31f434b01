package wire

import (
	"testing"
)

func BenchmarkAppendPushPublication(b *testing.B) {
	p := samplePublicationPush()
	for _, c := range codecs {
		b.Run(c.Name(), func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.SetBytes(int64(len(c.AppendPush(nil, p))))
			b.ReportAllocs()
			for b.Loop() {
				buf = c.AppendPush(buf[:0], p)
			}
		})
	}
}

func BenchmarkDecodeCommand(b *testing.B) {
	cmd := &Command{ID: 5, Method: MethodPublish, Publish: &PublishParams{Channel: "chat:room1",
		Data: []byte(`{"text":"hello","n":[1,2,3],"from":{"id":42,"name":"Ann"}}`)}}
	for _, c := range codecs {
		b.Run(c.Name(), func(b *testing.B) {
			in := c.AppendCommand(nil, cmd)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.DecodeCommand(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFrameDecoder(b *testing.B) {
	// 64 publication frames read in 4 KiB chunks, so some frames straddle
	// reads and take the buffered path.
	var stream []byte
	for range 64 {
		stream = AppendFrame(stream, Binary.AppendPush(nil, samplePublicationPush()))
	}
	var d FrameDecoder
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		frames := 0
		for off := 0; off < len(stream); off += 4096 {
			p := stream[off:min(off+4096, len(stream))]
			for len(p) > 0 {
				payload, n, err := d.Next(p)
				if err != nil {
					b.Fatal(err)
				}
				p = p[n:]
				if payload != nil {
					frames++
				}
			}
		}
		d.Release()
		if frames != 64 {
			b.Fatalf("decoded %d frames", frames)
		}
	}
}
