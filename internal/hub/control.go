package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// MaxControlSize bounds an encoded control message (a direct message's data
// plus its envelope). Larger incoming messages are dropped unread; larger
// outgoing ones fail with ErrDataTooLarge.
const MaxControlSize = 1 << 20

// controlType names a cluster-wide command carried by PublishControl.
type controlType string

const (
	ctlMessage     controlType = "message"
	ctlDisconnect  controlType = "disconnect"
	ctlUnsubscribe controlType = "unsubscribe"
	ctlNode        controlType = "node"
)

// controlMessage is the envelope of every control message: a JSON header
// (so that nodes of different versions ignore fields they do not know), a
// newline, and the raw payload. Only the fields of its Type are set.
type controlMessage struct {
	Type    controlType `json:"type"`
	From    string      `json:"from"`
	User    string      `json:"user,omitempty"`
	Client  string      `json:"client,omitempty"`
	Channel string      `json:"channel,omitempty"`
	Code    uint32      `json:"code,omitempty"`
	Reason  string      `json:"reason,omitempty"`
	// Reconnect (disconnect) or resubscribe (unsubscribe).
	Again bool        `json:"again,omitempty"`
	Info  *ClientInfo `json:"info,omitempty"`
	Node  *NodeInfo   `json:"node,omitempty"`
	// Data is a direct message's payload. It travels after the JSON
	// header and a newline, byte for byte, so it is never re-encoded.
	Data []byte `json:"-"`
}

var errControlTooLarge = errors.New("control message too large")

// nodeReportPrefix is how every node report published by nodeID begins
// (encodeControl writes the fields in declaration order).
func nodeReportPrefix(nodeID string) []byte {
	id, _ := json.Marshal(nodeID) // a string always encodes
	return fmt.Appendf(nil, `{"type":%q,"from":%s`, ctlNode, id)
}

func encodeControl(m *controlMessage) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode control message: %w", err)
	}
	b = append(b, '\n')
	b = append(b, m.Data...)
	if len(b) > MaxControlSize {
		return nil, fmt.Errorf("encode control message (%d bytes): %w", len(b), ErrDataTooLarge)
	}
	return b, nil
}

// decodeControl parses a control message, refusing oversized input before
// decoding it and messages that lack what their type needs.
func decodeControl(data []byte) (*controlMessage, error) {
	if len(data) > MaxControlSize {
		return nil, fmt.Errorf("decode control message (%d bytes): %w", len(data), errControlTooLarge)
	}
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return nil, errors.New("decode control message: no header terminator")
	}
	var m controlMessage
	if err := json.Unmarshal(data[:i], &m); err != nil {
		return nil, fmt.Errorf("decode control message: %w", err)
	}
	if payload := data[i+1:]; len(payload) > 0 {
		// The broker may reuse its buffer after HandleControl returns.
		m.Data = bytes.Clone(payload)
	}
	switch m.Type {
	case ctlMessage:
		if m.User == "" || len(m.Data) == 0 {
			return nil, errors.New("decode control message: message without user or data")
		}
	case ctlDisconnect:
		if m.User == "" && m.Client == "" {
			return nil, errors.New("decode control message: disconnect without user or client")
		}
		if m.Code > 0xffff {
			return nil, fmt.Errorf("decode control message: disconnect code %d out of range", m.Code)
		}
	case ctlUnsubscribe:
		if m.User == "" && m.Client == "" {
			return nil, errors.New("decode control message: unsubscribe without user or client")
		}
		if err := ValidateChannel(m.Channel); err != nil {
			return nil, fmt.Errorf("decode control message: %w", err)
		}
	case ctlNode:
		if m.Node == nil || m.Node.ID == "" {
			return nil, errors.New("decode control message: node info without id")
		}
		if len(m.Node.TopChannels) > MaxNodeInfoChannels {
			return nil, fmt.Errorf("decode control message: node info lists %d channels, more than %d",
				len(m.Node.TopChannels), MaxNodeInfoChannels)
		}
		for name, k := range m.Node.TopChannels {
			if k < 0 || ValidateChannel(name) != nil {
				return nil, fmt.Errorf("decode control message: node info channel %q with %d subscribers", name, k)
			}
		}
	default:
		return nil, fmt.Errorf("decode control message: unknown type %q", m.Type)
	}
	return &m, nil
}

// HandleControl implements EventHandler: it executes a cluster-wide command
// on this node's clients, or records another node's info. Malformed
// messages are counted and dropped.
func (h *Hub) HandleControl(data []byte) {
	if bytes.HasPrefix(data, h.selfNodeReport) {
		// This node's own report, back from the broker: nothing reads it
		// (Nodes and ClusterChannels use the live figures), so it is not
		// decoded.
		h.counters.controlIn.Add(1)
		return
	}
	m, err := decodeControl(data)
	if err != nil {
		h.counters.controlErrors.Add(1)
		h.cfg.Logger.Debug("dropping control message", "error", err)
		return
	}
	h.counters.controlIn.Add(1)
	switch m.Type {
	case ctlMessage:
		clients := h.userClients(m.User, "")
		if len(clients) == 0 {
			return
		}
		d := NewDelivery(wire.Push{Type: wire.PushMessage, Message: &wire.Message{Data: m.Data, Info: m.Info}})
		for _, c := range clients {
			c.sub.Deliver(d)
		}
		h.counters.deliveries.Add(uint64(len(clients)))
	case ctlDisconnect:
		for _, c := range h.userClients(m.User, m.Client) {
			if m.User != "" && c.info.User != m.User {
				continue
			}
			c.sub.ServerDisconnect(uint16(m.Code), m.Reason)
		}
	case ctlUnsubscribe:
		h.serverUnsubscribeLocal(m.User, m.Client, m.Channel, m.Code, m.Reason, m.Again)
	case ctlNode:
		n := *m.Node
		n.Updated = time.Now()
		h.nodesMu.Lock()
		_, known := h.nodes[n.ID]
		h.nodes[n.ID] = &n
		h.nodesMu.Unlock()
		if !known && n.ID != h.nodeID {
			// A node joined (or came back): answer at once so it lists
			// this node without waiting for the next interval. Each
			// node triggers this once per newcomer, so a cluster of n
			// nodes sends at most n-1 extra reports per join.
			select {
			case h.announce <- struct{}{}:
			default:
			}
		}
	}
}
