package broker

import (
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// replyError answers reply with err mapped to its wire error, and counts
// it as an error of the endpoint op (an op or noStream). stream is for the
// log ("" when the subject named none).
func (b *Broker) replyError(op, stream, reply string, err error) {
	we := b.wireError(op, stream, err)
	b.countError(op, we)
	if reply == "" {
		return
	}
	e := getEncoder()
	e.reset()
	e.errorReply(we)
	b.send(e, reply, e.body)
	putEncoder(e)
}

// replyJSON answers reply with v as JSON.
func (b *Broker) replyJSON(reply string, v any) {
	e := getEncoder()
	defer putEncoder(e)
	body, err := e.marshal(v)
	if err != nil {
		b.log.Error("encode reply", "err", err)
		b.replyError("", "", reply, subjects.ErrInternal)
		return
	}
	b.respond(reply, nil, body)
}

// respond sends one reply message. Replies go out with PublishMsg rather
// than micro's Request methods because they are sent from the stream's
// goroutine after the handler returned.
func (b *Broker) respond(reply string, h nats.Header, data []byte) {
	if reply == "" {
		return
	}
	b.publish(&nats.Msg{Subject: reply, Header: h, Data: data})
}

func (b *Broker) publish(m *nats.Msg) {
	if err := b.nc.PublishMsg(m); err != nil {
		b.log.Warn("send reply", "subject", m.Subject, "err", err)
	}
}
