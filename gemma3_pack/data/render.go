// render: execute an Ollama chat TEMPLATE with Go's text/template, the way Ollama does.
//
// stdin:  {"template": "...", "cases": [{"system": "...", "messages": [{"role": "...", "content": "..."}]}]}
// stdout: [{"output": "..."} | {"error": "..."}], one entry per case, in order.
//
// The data mirrors Ollama's Messages mode (template/template.go): a map with System, Messages
// (structs with Role/Content/...), Tools, Response, Think; parsed with missingkey=zero. Ollama's
// extra functions are given for completeness (json, currentDate, yesterdayDate). Standard library
// only, so `go build render.go` works offline.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"
	"time"
)

type ToolCall struct {
	Function struct {
		Index     int            `json:"index"`
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"function"`
}

type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking"`
	Images     []string   `json:"images"`
	ToolCalls  []ToolCall `json:"tool_calls"`
	ToolName   string     `json:"tool_name"`
	ToolCallID string     `json:"tool_call_id"`
}

type Case struct {
	System   string    `json:"system"`
	Messages []Message `json:"messages"`
}

type Request struct {
	Template string `json:"template"`
	Cases    []Case `json:"cases"`
}

type Result struct {
	Output *string `json:"output,omitempty"`
	Error  *string `json:"error,omitempty"`
}

var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"currentDate":   func(args ...string) string { return time.Now().Format("2006-01-02") },
	"yesterdayDate": func(args ...string) string { return time.Now().AddDate(0, 0, -1).Format("2006-01-02") },
}

func main() {
	var req Request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "bad request:", err)
		os.Exit(2)
	}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(req.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, "template error:", err)
		os.Exit(3)
	}
	results := make([]Result, 0, len(req.Cases))
	for _, c := range req.Cases {
		msgs := make([]*Message, len(c.Messages))
		for i := range c.Messages {
			msgs[i] = &c.Messages[i]
		}
		data := map[string]any{
			"System":     c.System,
			"Messages":   msgs,
			"Tools":      nil,
			"Response":   "",
			"Think":      false,
			"ThinkLevel": "",
			"IsThinkSet": false,
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, data); err != nil {
			msg := err.Error()
			results = append(results, Result{Error: &msg})
			continue
		}
		out := buf.String()
		results = append(results, Result{Output: &out})
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "write error:", err)
		os.Exit(4)
	}
}
