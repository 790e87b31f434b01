package wire

// Sample messages in the normal form decoders produce: params, result and
// payload pointers set for their method or type, data non-empty and not
// null, empty slices and maps nil.

func sampleInfo() *ClientInfo {
	return &ClientInfo{Client: "c8f3a1", User: "42",
		ConnInfo: []byte(`{"name":"Ann"}`), ChanInfo: []byte(`{"role":"mod"}`)}
}

type sampleCommand struct {
	name string
	cmd  *Command
}

func sampleCommands() []sampleCommand {
	return []sampleCommand{
		{"connect", &Command{ID: 1, Method: MethodConnect, Connect: &ConnectParams{Token: "eyJhbGciOi.x.y", Name: "herald-js", Version: "1.0.0"}}},
		{"connect_anonymous", &Command{ID: 1, Method: MethodConnect, Connect: &ConnectParams{}}},
		{"subscribe", &Command{ID: 2, Method: MethodSubscribe, Subscribe: &SubscribeParams{Channel: "chat:room1"}}},
		{"subscribe_since", &Command{ID: 3, Method: MethodSubscribe, Subscribe: &SubscribeParams{Channel: "chat:room1",
			Since: &StreamPosition{Offset: 38, Epoch: "k3Jd9a"}}}},
		{"unsubscribe", &Command{ID: 4, Method: MethodUnsubscribe, Unsubscribe: &ChannelParams{Channel: "chat:room1"}}},
		{"publish", &Command{ID: 5, Method: MethodPublish, Publish: &PublishParams{Channel: "chat:room1", Data: []byte(`{"text": "hello \u00e9 \"q\""}`)}}},
		{"presence", &Command{ID: 6, Method: MethodPresence, Presence: &ChannelParams{Channel: "chat:room1"}}},
		{"presence_stats", &Command{ID: 7, Method: MethodPresenceStats, PresenceStats: &ChannelParams{Channel: "chat:room1"}}},
		{"history", &Command{ID: 8, Method: MethodHistory, History: &HistoryParams{Channel: "chat:room1", Limit: 2, Reverse: true}}},
		{"history_since", &Command{ID: 4294967295, Method: MethodHistory, History: &HistoryParams{Channel: "c", Limit: -1,
			Since: &StreamPosition{Offset: 1<<64 - 1, Epoch: "e"}}}},
		{"ping", &Command{ID: 9, Method: MethodPing}},
		{"refresh", &Command{ID: 10, Method: MethodRefresh, Refresh: &RefreshParams{Token: "eyJ..."}}},
		{"send", &Command{ID: 11, Method: MethodSend, Send: &SendParams{User: "17", Data: []byte(`[1,2,3]`)}}},
		{"pong", &Command{Method: MethodPong}},
	}
}

type sampleReply struct {
	name   string
	method Method
	reply  *Reply
}

func sampleReplies() []sampleReply {
	pubs := []*Publication{
		{Offset: 39, Data: []byte(`{"text":"a"}`)},
		{Offset: 40, Data: []byte(`"b"`), Info: sampleInfo(), Time: 1763750000000},
		{Offset: 41, Data: []byte(`-1.5e3`), Time: -5},
	}
	return []sampleReply{
		{"connect", MethodConnect, &Reply{ID: 1, Connect: &ConnectResult{Client: "c8f3a1", Version: "0.1.0", Node: "n1",
			Expires: true, TTL: 3600, Ping: 25, Pong: true}}},
		{"error", MethodSubscribe, &Reply{ID: 2, Error: &Error{Code: ErrUnknownChannel, Message: "unknown channel namespace \"nope\""}}},
		{"error_temporary", MethodPublish, &Reply{ID: 2, Error: &Error{Code: ErrBrokerUnavailable, Message: "broker unavailable", Temporary: true}}},
		{"subscribe", MethodSubscribe, &Reply{ID: 2, Subscribe: &SubscribeResult{Epoch: "k3Jd9a", Offset: 41, Recoverable: true}}},
		{"subscribe_recovered", MethodSubscribe, &Reply{ID: 3, Subscribe: &SubscribeResult{Epoch: "k3Jd9a", Offset: 41,
			Recoverable: true, WasRecovering: true, Recovered: true, Publications: pubs}}},
		{"subscribe_empty", MethodSubscribe, &Reply{ID: 3, Subscribe: &SubscribeResult{}}},
		{"unsubscribe", MethodUnsubscribe, &Reply{ID: 4}},
		{"publish", MethodPublish, &Reply{ID: 5, Publish: &PublishResult{Offset: 42, Epoch: "k3Jd9a"}}},
		{"presence", MethodPresence, &Reply{ID: 6, Presence: &PresenceResult{Presence: map[string]*ClientInfo{
			"c8f3a1": sampleInfo(), "d01b77": {Client: "d01b77", User: "17"}}}}},
		{"presence_empty", MethodPresence, &Reply{ID: 6, Presence: &PresenceResult{}}},
		{"presence_stats", MethodPresenceStats, &Reply{ID: 7, PresenceStats: &PresenceStatsResult{NumClients: 3, NumUsers: 2}}},
		{"history", MethodHistory, &Reply{ID: 8, History: &HistoryResult{Publications: pubs, Offset: 42, Epoch: "k3Jd9a"}}},
		{"history_empty", MethodHistory, &Reply{ID: 8, History: &HistoryResult{Offset: 0, Epoch: "k3Jd9a"}}},
		{"ping", MethodPing, &Reply{ID: 9}},
		{"refresh", MethodRefresh, &Reply{ID: 10, Refresh: &RefreshResult{Expires: true, TTL: 3600}}},
		{"send", MethodSend, &Reply{ID: 11}},
	}
}

type samplePush struct {
	name string
	push *Push
}

func samplePublicationPush() *Push {
	return &Push{Type: PushPublication, Channel: "chat:room1", Publication: &Publication{
		Offset: 43, Data: []byte(`{"text":"hi"}`), Info: &ClientInfo{Client: "c8f3a1", User: "42"}, Time: 1763750000000}}
}

func samplePushes() []samplePush {
	return []samplePush{
		{"publication", samplePublicationPush()},
		{"publication_bare", &Push{Type: PushPublication, Channel: "news", Publication: &Publication{Data: []byte(`true`)}}},
		{"join", &Push{Type: PushJoin, Channel: "chat:room1", Join: &ClientInfo{Client: "d01b77", User: "17"}}},
		{"leave", &Push{Type: PushLeave, Channel: "chat:room1", Leave: sampleInfo()}},
		{"unsubscribe", &Push{Type: PushUnsubscribe, Channel: "chat:room1", Unsubscribe: &UnsubscribePush{
			Code: UnsubscribeInsufficientState, Reason: "insufficient state", Resubscribe: true}}},
		{"message", &Push{Type: PushMessage, Message: &Message{Data: []byte(`{"text":"psst"}`), Info: &ClientInfo{Client: "d01b77", User: "17"}}}},
		{"message_bare", &Push{Type: PushMessage, Message: &Message{Data: []byte(`0`)}}},
		{"disconnect", &Push{Type: PushDisconnect, Disconnect: &Disconnect{Code: DisconnectSlowConsumer, Reason: "slow consumer", Reconnect: true}}},
		{"disconnect_final", &Push{Type: PushDisconnect, Disconnect: &Disconnect{Code: DisconnectBadRequest, Reason: "bad \x01 request\n"}}},
		{"ping", &Push{Type: PushPing}},
	}
}
