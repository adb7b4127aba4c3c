// ollama_functiongemma: Ollama's own FunctionGemma renderer and parser (model/renderers,
// model/parsers; the release pinned in go.mod), for comparing gemma3-pack's port with them.
//
// stdin (JSON): {"render": [{"messages": [api.Message], "tools": [api.Tool]}], "parse":
// [{"reply": "...", "tools": [api.Tool], "chunk": n}]}; chunk = 0 hands the parser the whole
// reply with done=true, n > 0 pieces of n runes (done on the last), as the server streams them.
// stdout: {"rendered": ["..."], "parsed": [{"content", "tool_calls"}]}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/model/parsers"
	"github.com/ollama/ollama/model/renderers"
)

type renderReq struct {
	Messages []api.Message `json:"messages"`
	Tools    []api.Tool    `json:"tools"`
}

type parseReq struct {
	Reply string     `json:"reply"`
	Tools []api.Tool `json:"tools"`
	Chunk int        `json:"chunk"`
}

type parsed struct {
	Content   string         `json:"content"`
	ToolCalls []api.ToolCall `json:"tool_calls"`
}

func main() {
	var req struct {
		Render []renderReq `json:"render"`
		Parse  []parseReq  `json:"parse"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "bad request: %v\n", err)
		os.Exit(2)
	}
	out := struct {
		Rendered []string `json:"rendered"`
		Parsed   []parsed `json:"parsed"`
	}{Rendered: []string{}, Parsed: []parsed{}}
	for _, r := range req.Render {
		text, err := (&renderers.FunctionGemmaRenderer{}).Render(r.Messages, r.Tools, nil)
		if err != nil {
			fmt.Fprintf(os.Stderr, "render: %v\n", err)
			os.Exit(3)
		}
		out.Rendered = append(out.Rendered, text)
	}
	for _, q := range req.Parse {
		p := &parsers.FunctionGemmaParser{}
		p.Init(q.Tools, nil, nil)
		res := parsed{ToolCalls: []api.ToolCall{}}
		var content strings.Builder
		pieces := []string{q.Reply}
		if q.Chunk > 0 {
			pieces = nil
			runes := []rune(q.Reply)
			for i := 0; i < len(runes); i += q.Chunk {
				pieces = append(pieces, string(runes[i:min(i+q.Chunk, len(runes))]))
			}
		}
		for i, piece := range pieces {
			c, _, calls, err := p.Add(piece, i == len(pieces)-1)
			if err != nil {
				fmt.Fprintf(os.Stderr, "parse: %v\n", err)
				os.Exit(4)
			}
			content.WriteString(c)
			res.ToolCalls = append(res.ToolCalls, calls...)
		}
		res.Content = content.String()
		out.Parsed = append(out.Parsed, res)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		os.Exit(5)
	}
}
