package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// applyWrites commits the writes of a batch of set and setmany jobs in one
// store call (group commit) and answers each job with its own results.
func (b *Broker) applyWrites(e *entry, batch []*job) {
	n := 0
	for _, j := range batch {
		n += len(j.items)
	}
	ws := make([]store.Write, 0, n)
	for _, j := range batch {
		for _, it := range j.items {
			if it.err == nil {
				ws = append(ws, it.w)
			}
		}
	}
	if len(ws) == 0 {
		// Every item was refused while parsing: nothing to write, and a
		// setmany that writes nothing creates no stream.
		b.answerWrites(e.name, batch, nil)
		return
	}
	created, err := b.open(e, true, nil)
	if err != nil {
		b.failAll(e, batch, err)
		return
	}
	res, err := e.st.Append(ws)
	if err == nil && len(res) != len(ws) {
		err = errors.New("store returned a result count that does not match the writes")
	}
	if err != nil {
		if created {
			// Nothing was written: the stream this batch created must not
			// remain, whatever failed.
			b.drop(e)
		}
		b.failAll(e, batch, err)
		return
	}
	b.stats.commits.Add(1)
	b.stats.commitItems.Add(uint64(len(ws)))
	b.stats.commitReq.Add(uint64(len(batch)))
	for n := uint64(len(ws)); ; {
		m := b.stats.maxBatch.Load()
		if n <= m || b.stats.maxBatch.CompareAndSwap(m, n) {
			break
		}
	}
	if created && e.st.Revision() == 0 {
		b.drop(e)
	}
	b.answerWrites(e.name, batch, res)
}

// answerWrites sends each job its results; res holds, in order, the results
// of the items that reached the store. Replies are written by hand into one
// buffer, as encoding/json would write subjects.SetReply and subjects.ErrorReply.
func (b *Broker) answerWrites(stream string, batch []*job, res []store.WriteResult) {
	enc := getEncoder()
	defer putEncoder(enc)
	for _, j := range batch {
		body := enc.body[:0]
		if j.many {
			body = append(body, '[')
		}
		for i, it := range j.items {
			err := it.err
			var r store.WriteResult
			if err == nil {
				r, res = res[0], res[1:]
				err = r.Err
			}
			if j.many && i > 0 {
				body = append(body, ',')
			}
			if err != nil {
				if !j.many {
					b.replyErrorSince(j.op, stream, j.reply, err, j.at)
					j.answered = true
					break
				}
				body = append(body, `{"error":`...)
				body = append(appendError(body, b.wireError(j.op, stream, err)), '}')
				continue
			}
			body = appendSetReply(body, r)
		}
		enc.body = body
		if j.answered {
			continue
		}
		if j.many {
			body = append(body, ']')
			enc.body = body
		}
		b.respond(j.reply, nil, body)
		j.answered = true
	}
}

// failAll answers every job of a batch with err, as one error reply each
// (a setmany too), and closes a stream whose file turned out damaged or
// closed so that the next request opens it afresh.
func (b *Broker) failAll(e *entry, batch []*job, err error) {
	for _, j := range batch {
		b.replyErrorSince(j.op, e.name, j.reply, err, j.at)
		j.answered = true
	}
	if e.st != nil && (errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrClosed)) {
		_ = b.closeFile(e)
		b.forget(e)
	}
}

// applyOne applies a job that is not a write.
func (b *Broker) applyOne(e *entry, j *job) {
	if j.op == subjects.OpConfig && j.config != nil {
		b.applyConfig(e, j)
		return
	}
	if _, err := b.open(e, false, nil); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			b.answerMissing(e.name, j)
			return
		}
		b.failAll(e, []*job{j}, err)
		return
	}
	var err error
	switch j.op {
	case subjects.OpGet:
		var m *store.Message
		if j.get.Seq != nil {
			m, err = e.st.Get(*j.get.Seq)
		} else {
			m, err = e.st.GetKey(*j.get.Key)
		}
		if err == nil && j.reply != "" {
			// A message stored before it could be known to be too large
			// to send fails here; the client gets an error, not silence.
			enc := getEncoder()
			enc.reset()
			enc.message(m)
			err = b.nc.PublishMsg(&nats.Msg{Subject: j.reply, Header: enc.h, Data: m.Data})
			putEncoder(enc)
		}
	case subjects.OpGetAll:
		err = b.getAll(e, j)
	case subjects.OpChanges:
		err = b.changes(e, j)
	case subjects.OpDelete:
		var n int64
		if n, err = deleteOp(e.st, j.del); err == nil {
			b.replyJSON(j.reply, subjects.CountReply{Count: n})
		}
	case subjects.OpConfig:
		b.replyJSON(j.reply, e.st.Config())
	case subjects.OpInventory:
		var inv store.Inventory
		if inv, err = e.st.Inventory(); err == nil {
			if inv.Limits == nil {
				inv.Limits = map[string]any{}
			}
			b.replyJSON(j.reply, inv)
		}
	case subjects.OpKeys:
		var keys []string
		var more bool
		if keys, more, err = e.st.Keys(j.keys.After, j.keys.PageLimit()); err == nil {
			if keys == nil {
				keys = []string{}
			}
			b.replyJSON(j.reply, subjects.KeysReply{Keys: keys, More: more})
		}
	case subjects.OpDestroy:
		err = b.destroy(e)
		if err == nil {
			b.replyJSON(j.reply, subjects.OKReply{OK: true})
		}
	}
	if err != nil {
		b.failAll(e, []*job{j}, err)
	}
	j.answered = true
}

// locate answers which worker serves stream: this one, which received
// the request (in partitioned mode on the subject of the stream's
// partition, which parseSubject checked is served here now). It runs on
// the handler's goroutine and touches no stream, so it answers for a
// stream that does not exist where it would live.
func (b *Broker) locate(reply, stream string) {
	loc := subjects.Location{Stream: stream, Worker: b.self.id, Name: b.opts.Name}
	if p := b.parts; p != nil {
		n := subjects.Partition(stream, p.count)
		loc.Partition, loc.PartitionCount = &n, p.count
	}
	b.replyJSON(reply, loc)
}

// answerMissing answers a job on a stream that does not exist, creating
// nothing (PROTOCOL.md section 1, "Creation").
func (b *Broker) answerMissing(stream string, j *job) {
	switch j.op {
	case subjects.OpGet, subjects.OpDestroy:
		b.replyErrorSince(j.op, stream, j.reply, subjects.ErrNotFound.WithDescription("no such stream"), j.at)
	case subjects.OpGetAll:
		b.respond(j.reply, terminator(store.ReadResult{}), nil)
	case subjects.OpChanges:
		// Nothing changed after revision 0 of a stream that does not
		// exist; a later revision was one of a destroyed stream.
		if j.changes.AfterRevision > 0 {
			b.replyErrorSince(j.op, stream, j.reply, subjects.ErrRevisionGone.WithDescription("no such stream"), j.at)
			break
		}
		enc := getEncoder()
		enc.reset()
		enc.changesTerminator(store.ChangesResult{})
		b.send(enc, j.reply, nil)
		putEncoder(enc)
	case subjects.OpInventory:
		b.replyJSON(j.reply, store.Inventory{Limits: map[string]any{}})
	case subjects.OpKeys:
		b.replyJSON(j.reply, subjects.KeysReply{Keys: []string{}})
	case subjects.OpConfig:
		b.replyJSON(j.reply, subjects.DefaultConfig())
	case subjects.OpDelete:
		b.replyJSON(j.reply, subjects.CountReply{})
	}
	j.answered = true
}

// applyConfig changes a stream's config, creating the stream when it does
// not exist and the change changes something.
func (b *Broker) applyConfig(e *entry, j *job) {
	_, err := b.open(e, false, nil)
	if errors.Is(err, store.ErrNotFound) {
		b.createWithConfig(e, j)
		return
	}
	if err == nil {
		var cfg store.Config
		if cfg, err = subjects.ParseConfigPatch(e.st.Config(), j.config); err == nil {
			if cfg, err = e.st.SetConfig(cfg); err == nil {
				b.replyJSON(j.reply, cfg)
			}
		}
	}
	if err != nil {
		b.failAll(e, []*job{j}, err)
	}
	j.answered = true
}

func (b *Broker) createWithConfig(e *entry, j *job) {
	def := subjects.DefaultConfig()
	cfg, err := subjects.ParseConfigPatch(def, j.config)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		b.replyErrorSince(j.op, e.name, j.reply, err, j.at)
		j.answered = true
		return
	}
	if sameConfig(cfg, def) {
		b.replyJSON(j.reply, def)
		j.answered = true
		return
	}
	created, err := b.open(e, true, &cfg)
	if err == nil && !created {
		// Created meanwhile by another worker: apply as a change.
		var got store.Config
		if got, err = e.st.SetConfig(cfg); err == nil {
			cfg = got
		}
	}
	if err != nil {
		b.failAll(e, []*job{j}, err)
		j.answered = true
		return
	}
	cfg = e.st.Config()
	if created && e.st.Revision() == 0 {
		b.drop(e)
	}
	b.replyJSON(j.reply, cfg)
	j.answered = true
}

// sameConfig compares configs by their wire form, which is what a client
// sees (Desc is raw JSON and not comparable with ==).
func sameConfig(a, c store.Config) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(c)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// destroy removes e's stream; its destroy event is published by Notify.
func (b *Broker) destroy(e *entry) error {
	// Destroy closes and removes in one: all of it holds dirMu.
	err := b.retire(e, nil, func() (bool, error) {
		err := e.st.Destroy()
		if err != nil {
			_ = e.st.Close()
		}
		return err == nil, err
	})
	if err == nil && !e.memory {
		b.pruneDirs(e.path)
	}
	return err
}

func deleteOp(st streamAPI, d subjects.DeleteRequest) (int64, error) {
	switch {
	case d.Seq != nil:
		return st.DeleteSeqs(*d.Seq)
	case d.Seqs != nil:
		if len(*d.Seqs) == 0 {
			return 0, nil
		}
		return st.DeleteSeqs(*d.Seqs...)
	case d.LastSeq != nil:
		return st.DeleteThrough(*d.LastSeq)
	case d.Key != nil:
		return st.DeleteKey(*d.Key)
	default:
		return st.DeleteAll()
	}
}

// getAll sends one page of messages to the reply subject, then the
// terminator; an error ends the page with an error reply instead. One
// header map serves every message of the page. A page read ahead by the
// previous getall of the stream is sent from memory when it answers this
// one (see readAhead); then the next page is read ahead.
func (b *Broker) getAll(e *entry, j *job) error {
	q := store.ReadQuery{
		StartSeq:  j.getall.StartSeq,
		EndSeq:    j.getall.EndSeq,
		StartTime: j.getall.StartTime,
	}
	q.MaxMsgs, q.MaxBytes = subjects.PageBounds(j.getall.MaxMsgs, j.getall.MaxBytes)
	enc := getEncoder()
	defer putEncoder(enc)
	msg := nats.Msg{Subject: j.reply}
	send := func(m *store.Message) error {
		if j.reply == "" {
			return nil
		}
		enc.reset()
		enc.message(m)
		msg.Header, msg.Data = enc.h, m.Data
		return b.nc.PublishMsg(&msg)
	}
	var res store.ReadResult
	if pg := b.takeAhead(e, q); pg != nil {
		for _, m := range pg.msgs {
			if err := send(m); err != nil {
				return err
			}
		}
		res = pg.res
	} else {
		var err error
		if res, err = e.st.Read(q, send); err != nil {
			return err
		}
	}
	if j.reply == "" {
		return nil
	}
	enc.reset()
	enc.terminator(res)
	b.send(enc, j.reply, nil)
	// While the client asks for the next page, read it.
	b.readNext(e, q, res)
	return nil
}

// changes sends one page of the changes after a revision to the reply
// subject, then the terminator; an error ends the page with an error
// reply instead. One header map serves every change of the page.
func (b *Broker) changes(e *entry, j *job) error {
	q := store.ChangesQuery{AfterRevision: j.changes.AfterRevision}
	q.MaxMsgs, q.MaxBytes = subjects.PageBounds(j.changes.MaxMsgs, j.changes.MaxBytes)
	enc := getEncoder()
	defer putEncoder(enc)
	msg := nats.Msg{Subject: j.reply}
	res, err := e.st.Changes(q, func(ev *store.Event) error {
		if j.reply == "" {
			return nil
		}
		enc.reset()
		msg.Data = enc.event(ev)
		msg.Header = enc.h
		return b.nc.PublishMsg(&msg)
	})
	switch {
	case errors.Is(err, store.ErrRevisionGone) && q.AfterRevision > res.Revision:
		return subjects.ErrRevisionGone.WithDescription(fmt.Sprintf("revision %d is ahead of the stream's %d (a stream of that name was destroyed); re-read the stream with getall", q.AfterRevision, res.Revision))
	case errors.Is(err, nats.ErrMaxPayload):
		// A delete that removed very many keyed messages, say: the
		// client reads the stream again, as after a change dropped.
		return subjects.ErrRevisionGone.WithDescription("a change after that revision is larger than the NATS max payload; re-read the stream with getall")
	case err != nil:
		return err
	}
	if j.reply == "" {
		return nil
	}
	enc.reset()
	enc.changesTerminator(res)
	b.send(enc, j.reply, nil)
	return nil
}

// terminator is the header of the message that ends a getall page, in a
// map of its own.
func terminator(r store.ReadResult) nats.Header {
	enc := &encoder{h: make(nats.Header, 5), num: make([]byte, 0, 4*20)}
	enc.terminator(r)
	return enc.h
}

// publishEvents publishes a commit's events on the stream's event subject.
// It runs under the stream's lock, so events go out in revision order. A
// failure to publish (while reconnecting, say) is logged and never fails
// the request: subscribers detect the gap by the revision. One header map
// serves every event of the commit.
func (b *Broker) publishEvents(name string, evs []store.Event) {
	enc := getEncoder()
	defer putEncoder(enc)
	msg := nats.Msg{Subject: subjects.EventSubject(b.prefix, name)}
	for i := range evs {
		ev := &evs[i]
		enc.reset()
		body := enc.event(ev)
		msg.Header, msg.Data = enc.h, body
		if err := b.nc.PublishMsg(&msg); err != nil {
			b.stats.eventErrors.Add(1)
			b.log.Warn("publish event", "stream", name, "revision", ev.Revision, "err", err)
			continue
		}
		b.stats.eventsPublished.Add(1)
	}
}
