// ollama_toolparse: what Ollama's own tool-call parser makes of model replies.
//
// It imports github.com/ollama/ollama (the release pinned in go.mod) and does what that release's
// /api/chat does with a reply when the request has tools and the model no built-in PARSER
// (server/routes.go: tools.NewParser(m.Template.Template, req.Tools), then Add per chunk): the
// tool-call tag comes from the TEMPLATE, the calls from the reply.
//
// stdin (JSON): {"template": "...", "tools": [api.Tool], "replies": ["...", ...]}
// stdout: {"results": [{"tag", "tool_calls": [api.ToolCall], "content"}]}, one per reply.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/template"
	"github.com/ollama/ollama/tools"
)

type request struct {
	Template string     `json:"template"`
	Tools    []api.Tool `json:"tools"`
	Replies  []string   `json:"replies"`
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
		// server/routes.go:2589-2610 (v0.24.0; tools/ is the same in v0.34.4 but for Tag) for one chunk: the content Add returns, or at the
		// end of the stream what the parser still holds (Content).
		calls, content := p.Add(reply)
		if content == "" && len(calls) == 0 {
			content = p.Content()
		}
		r := result{Tag: p.Tag(), ToolCalls: calls, Content: content}
		if r.ToolCalls == nil {
			r.ToolCalls = []api.ToolCall{}
		}
		out.Results = append(out.Results, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		os.Exit(4)
	}
}
