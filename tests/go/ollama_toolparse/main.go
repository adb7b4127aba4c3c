// ollama_toolparse: what Ollama's own tool-call parser makes of model replies.
//
// It imports github.com/ollama/ollama (the release pinned in go.mod) and does what that release's
// /api/chat does with a reply when the request has tools and the model no built-in PARSER
// (server/routes.go: tools.NewParser(m.Template.Template, req.Tools), then Add per chunk): the
// tool-call tag comes from the TEMPLATE, the calls from the reply.
//
// stdin (JSON): {"template": "...", "tools": [api.Tool], "replies": ["...", ...], "chunk": n}
// stdout: {"results": [{"tag", "tool_calls": [api.ToolCall], "content"}]}, one per reply.
//
// chunk = 0 hands the parser each reply whole; chunk = n > 0 in pieces of n runes, as the runner
// streams tokens, and does with each piece what server/routes.go (v0.34.4, lines 2910-2934) does
// with each streamed chunk: content the parser returns is sent (and the calls of that same Add
// are dropped), else its calls are sent, else nothing until the last chunk, which sends what the
// parser still holds (Content). A client's message is the sent contents joined and the calls.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/template"
	"github.com/ollama/ollama/tools"
)

type request struct {
	Template string     `json:"template"`
	Tools    []api.Tool `json:"tools"`
	Replies  []string   `json:"replies"`
	Chunk    int        `json:"chunk"`
}

type result struct {
	Tag       string         `json:"tag"`
	ToolCalls []api.ToolCall `json:"tool_calls"`
	Content   string         `json:"content"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "bad request: %v\n", err)
		os.Exit(2)
	}
	t, err := template.Parse(req.Template)
	if err != nil {
		fmt.Fprintf(os.Stderr, "template error: %v\n", err)
		os.Exit(3)
	}
	out := struct {
		Results []result `json:"results"`
	}{Results: []result{}}
	for _, reply := range req.Replies {
		p := tools.NewParser(t.Template, req.Tools)
		r := result{Tag: p.Tag(), ToolCalls: []api.ToolCall{}}
		if req.Chunk <= 0 {
			// server/routes.go:2589-2610 (v0.24.0; tools/ is the same in v0.34.4 but for Tag) for
			// one chunk: the content Add returns, or at the end of the stream what the parser
			// still holds (Content).
			calls, content := p.Add(reply)
			if content == "" && len(calls) == 0 {
				content = p.Content()
			}
			r.Content = content
			if calls != nil {
				r.ToolCalls = calls
			}
		} else {
			runes := []rune(reply)
			var sent strings.Builder
			for i := 0; i < len(runes); i += req.Chunk {
				end := min(i+req.Chunk, len(runes))
				done := end == len(runes)
				calls, content := p.Add(string(runes[i:end]))
				if len(content) > 0 {
					sent.WriteString(content)
				} else if len(calls) > 0 {
					r.ToolCalls = append(r.ToolCalls, calls...)
				} else if done {
					sent.WriteString(p.Content())
				}
			}
			r.Content = sent.String()
		}
		out.Results = append(out.Results, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		os.Exit(4)
	}
}
