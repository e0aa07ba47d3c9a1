package client_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

func TestDecodeMsg(t *testing.T) {
	for _, tt := range []struct {
		name    string
		header  nats.Header
		want    *client.Msg
		wantErr bool
	}{
		{
			name:   "Plain",
			header: nats.Header{"Persist-Seq": {"7"}, "Persist-Time": {"1700000000000"}},
			want:   &client.Msg{Seq: 7, Time: 1700000000000, Data: []byte("x")},
		},
		{
			name: "KeyedWithHeadersAndExpiry",
			header: nats.Header{
				"Persist-Seq": {"8"}, "Persist-Time": {"5"}, "Persist-Key": {"k"}, "Persist-Expires": {"9"},
				"Persist-Op": {"set"}, "Persist-Revision": {"3"}, "Nats-Msg-Id": {"x"},
				"X-User": {"a", "b"},
			},
			want: &client.Msg{Seq: 8, Time: 5, Key: "k", Expires: 9, Header: nats.Header{"X-User": {"a", "b"}}, Data: []byte("x")},
		},
		{name: "NoSeq", header: nats.Header{"Persist-Time": {"5"}}, wantErr: true},
		{name: "ZeroSeq", header: nats.Header{"Persist-Seq": {"0"}}, wantErr: true},
		{name: "BadSeq", header: nats.Header{"Persist-Seq": {"-1"}}, wantErr: true},
		{name: "BadTime", header: nats.Header{"Persist-Seq": {"1"}, "Persist-Time": {"soon"}}, wantErr: true},
		{name: "BadExpires", header: nats.Header{"Persist-Seq": {"1"}, "Persist-Expires": {"1e3"}}, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.DecodeMsg(&nats.Msg{Header: tt.header, Data: []byte("x")})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("DecodeMsg() = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeMsg() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("DecodeMsg() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	for _, tt := range []struct {
		name    string
		msg     *nats.Msg
		want    client.Event
		wantErr bool
	}{
		{
			name: "Set",
			msg:  &nats.Msg{Header: nats.Header{"Persist-Op": {"set"}, "Persist-Revision": {"1"}, "Persist-Seq": {"1"}, "Persist-Time": {"2"}}, Data: []byte("p")},
			want: client.Event{Op: "set", Revision: 1, Msg: &client.Msg{Seq: 1, Time: 2, Data: []byte("p")}},
		},
		{
			name: "Delete",
			msg:  &nats.Msg{Header: nats.Header{"Persist-Op": {"delete"}, "Persist-Revision": {"4"}, "Persist-Reason": {"max_msgs"}}, Data: []byte(`{"ranges":[[1,3],[7,7]]}`)},
			want: client.Event{Op: "delete", Revision: 4, Ranges: [][2]uint64{{1, 3}, {7, 7}}, Reason: "max_msgs"},
		},
		{
			name: "SetWithMsgID",
			msg:  &nats.Msg{Header: nats.Header{"Persist-Op": {"set"}, "Persist-Revision": {"3"}, "Persist-Seq": {"2"}, "Persist-Time": {"2"}, "Persist-Msg-Id": {"abc"}, "Persist-Key": {"k"}}},
			want: client.Event{Op: "set", Revision: 3, MsgID: "abc", Msg: &client.Msg{Seq: 2, Time: 2, Key: "k"}},
		},
		{
			name: "DeleteWithKeys",
			msg:  &nats.Msg{Header: nats.Header{"Persist-Op": {"delete"}, "Persist-Revision": {"5"}, "Persist-Reason": {"request"}}, Data: []byte(`{"ranges":[[2,2]],"keys":["k"]}`)},
			want: client.Event{Op: "delete", Revision: 5, Ranges: [][2]uint64{{2, 2}}, Keys: []string{"k"}, Reason: "request"},
		},
		{
			name: "Config",
			msg:  &nats.Msg{Header: nats.Header{"Persist-Op": {"config"}, "Persist-Revision": {"2"}}, Data: []byte(`{"max_msgs":5,"desc":null}`)},
			want: client.Event{Op: "config", Revision: 2, Config: &client.Config{MaxMsgs: 5, Desc: []byte("null")}},
		},
		{
			name: "Destroy",
			msg:  &nats.Msg{Header: nats.Header{"Persist-Op": {"destroy"}, "Persist-Revision": {"9"}}},
			want: client.Event{Op: "destroy", Revision: 9},
		},
		{name: "NoRevision", msg: &nats.Msg{Header: nats.Header{"Persist-Op": {"destroy"}}}, wantErr: true},
		{name: "UnknownOp", msg: &nats.Msg{Header: nats.Header{"Persist-Op": {"nap"}, "Persist-Revision": {"1"}}}, wantErr: true},
		{name: "BadRanges", msg: &nats.Msg{Header: nats.Header{"Persist-Op": {"delete"}, "Persist-Revision": {"1"}}, Data: []byte(`{"ranges":[[1]`)}, wantErr: true},
		{name: "InvertedRange", msg: &nats.Msg{Header: nats.Header{"Persist-Op": {"delete"}, "Persist-Revision": {"1"}}, Data: []byte(`{"ranges":[[3,1]]}`)}, wantErr: true},
		{name: "ZeroRange", msg: &nats.Msg{Header: nats.Header{"Persist-Op": {"delete"}, "Persist-Revision": {"1"}}, Data: []byte(`{"ranges":[[0,1]]}`)}, wantErr: true},
		{name: "SetWithoutSeq", msg: &nats.Msg{Header: nats.Header{"Persist-Op": {"set"}, "Persist-Revision": {"1"}}}, wantErr: true},
		{name: "NoHeaders", msg: &nats.Msg{Data: []byte("junk")}, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.DecodeEvent(tt.msg)
			if tt.wantErr {
				if !errors.Is(err, client.ErrBadEvent) {
					t.Fatalf("DecodeEvent() = %+v, %v; want ErrBadEvent", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeEvent() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("DecodeEvent() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add("set", "1", "1", "2", []byte("p"))
	f.Add("delete", "2", "", "", []byte(`{"ranges":[[1,2]]}`))
	f.Add("config", "3", "", "", []byte(`{"max_msgs":1}`))
	f.Fuzz(func(t *testing.T, op, rev, seq, tm string, body []byte) {
		m := &nats.Msg{Header: nats.Header{
			subjects.HeaderOp: {op}, subjects.HeaderRevision: {rev},
			subjects.HeaderSeq: {seq}, subjects.HeaderTime: {tm},
		}, Data: body}
		ev, err := client.DecodeEvent(m)
		if err != nil {
			return
		}
		if ev.Revision == 0 {
			t.Fatalf("DecodeEvent() accepted revision 0: %+v", ev)
		}
		if ev.Op == subjects.OpSet && (ev.Msg == nil || ev.Msg.Seq == 0) {
			t.Fatalf("DecodeEvent() accepted a set without a seq: %+v", ev)
		}
	})
}
