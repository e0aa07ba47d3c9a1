package broker

import (
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// replyError answers reply with err mapped to its wire error.
func (b *Broker) replyError(op, reply string, err error) {
	we := b.wireError(err)
	if op != "" {
		b.stats.errorCount(op).Add(1)
	}
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
		b.replyError("", reply, subjects.ErrInternal)
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
