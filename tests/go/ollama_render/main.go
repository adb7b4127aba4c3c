// ollama_render: build chat prompts with Ollama's own code, the way its server's /api/chat does.
//
// It imports github.com/ollama/ollama (the release pinned in go.mod) and follows the chat path of
// that release step by step; each step names the file and line of v0.34.4 it reproduces. The
// exported functions are called as they are (parser.ParseFile, Modelfile.CreateRequest,
// template.Parse, Template.Execute with template.Values, api.Message's JSON decoding, which
// lowercases roles); the few lines of the unexported server functions are copied in order.
//
// stdin (JSON):
//
//	{"modelfile": "...",                  // a Modelfile: its TEMPLATE, SYSTEM and MESSAGEs are used, or
//	 "template": "...", "system": "...",  // the same three given directly
//	 "messages": [api.Message],           //   (MESSAGE lines of a Modelfile)
//	 "detect": "...",                     // or no TEMPLATE: a GGUF's tokenizer.chat_template, whose
//	                                      //   autodetected Go template `ollama create` stores
//	 "requests": [api.ChatRequest]}       // /api/chat bodies: messages (images base64), tools
//
// stdout: {"template", "system", "messages" (what the model stores), "detected" (the name of the
// autodetected template, if any), "results": [{"prompt", "images"} | {"error"}]}, one result per
// request, in order; "images" is the number of media the server would send with the prompt.
// Exit 2: bad input; 3: the TEMPLATE or Modelfile is refused (as `ollama create` refuses it).
//
// What is not reproduced, because it cannot change a Gemma 3 prompt: truncation (chatPrompt's
// truncate=false; with truncate on, a conversation that fits the context renders identically),
// thinking (gemma3 has no thinking capability: the server answers 400), built-in RENDERER/PARSER
// models, filterThinkTags (qwen3 and deepseek-r1 only), and GGUF-Jinja ("native") chat, which the
// server picks only when the GGUF's Jinja exposes more capabilities (tools, thinking) than the
// Go TEMPLATE (server/images.go:795 shouldPreferChatTemplate) — Google's Gemma 3 Jinja has none.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/parser"
	"github.com/ollama/ollama/template"
)

type request struct {
	Modelfile string            `json:"modelfile"`
	Template  string            `json:"template"`
	System    string            `json:"system"`
	Messages  []api.Message     `json:"messages"`
	Detect    string            `json:"detect"`
	Requests  []api.ChatRequest `json:"requests"`
}

type result struct {
	Prompt *string `json:"prompt,omitempty"`
	Images int     `json:"images"`
	Error  *string `json:"error,omitempty"`
}

type response struct {
	Template string        `json:"template"`
	System   string        `json:"system"`
	Messages []api.Message `json:"messages"`
	Detected string        `json:"detected"`
	Results  []result      `json:"results"`
}

// model holds what server/images.go GetModel reads back from the created model's layers.
type model struct {
	Template *template.Template
	System   string
	Messages []api.Message
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(code)
}

// fromModelfile reads TEMPLATE, SYSTEM and MESSAGE the way `ollama create` does: parser.ParseFile,
// then Modelfile.CreateRequest (parser/parser.go:57). FROM/ADAPTER/DRAFT are dropped first, so no
// weights file is read or hashed; they do not reach the prompt.
func fromModelfile(text string) (tmpl, system string, messages []api.Message, err error) {
	f, err := parser.ParseFile(strings.NewReader(text))
	if err != nil {
		return "", "", nil, err
	}
	f.Commands = slices.DeleteFunc(f.Commands, func(c parser.Command) bool {
		return c.Name == "model" || c.Name == "adapter" || c.Name == "draft"
	})
	cr, err := f.CreateRequest("")
	if err != nil {
		return "", "", nil, err
	}
	return cr.Template, cr.System, cr.Messages, nil
}

// create stores the three values as `ollama create` does and reads them back as GetModel does.
func create(tmpl, system string, messages []api.Message) (*model, error) {
	if tmpl == "" {
		return nil, errors.New("no TEMPLATE: the model would inherit its FROM model's template")
	}
	// create/manifest.go:177 ApplyModelfileLayers: the TEMPLATE must parse, then becomes a text layer.
	if _, err := template.Parse(tmpl); err != nil {
		return nil, fmt.Errorf("template error: %s", err)
	}
	// create/manifest.go:250: MESSAGEs are stored JSON-encoded; server/images.go:773 decodes them.
	var stored bytes.Buffer
	if err := json.NewEncoder(&stored).Encode(messages); err != nil {
		return nil, err
	}
	var loaded []api.Message
	if len(messages) > 0 {
		if err := json.NewDecoder(&stored).Decode(&loaded); err != nil {
			return nil, err
		}
	}
	// server/images.go:744: m.Template, err = template.Parse(string(bts)).
	t, err := template.Parse(tmpl)
	if err != nil {
		return nil, err
	}
	return &model{Template: t, System: system, Messages: loaded}, nil
}

// hasTools is the tools capability of a Go TEMPLATE (server/images.go:249 goTemplateCapabilities).
func hasTools(t *template.Template) bool {
	vars, err := t.Vars()
	return err == nil && slices.Contains(vars, "tools")
}

// chat builds the prompt for one /api/chat request (server/routes.go:2509 ChatHandler).
func chat(m *model, req api.ChatRequest) (string, int, error) {
	// routes.go:2701 + 2726 scheduleRunner -> images.go:522 CheckCapabilities: tools need a TEMPLATE that uses .Tools.
	if len(req.Tools) > 0 && !hasTools(m.Template) {
		return "", 0, errors.New("does not support tools")
	}
	// routes.go:2737: no messages only loads the model.
	if len(req.Messages) == 0 {
		return "", 0, errors.New("no messages: the server only loads the model")
	}
	// routes.go:2748-2751. (The server's m is fresh per request; clone so requests stay apart.)
	msgs := append(slices.Clone(m.Messages), req.Messages...)
	if req.Messages[0].Role != "system" && m.System != "" {
		msgs = append([]api.Message{{Role: "system", Content: m.System}}, msgs...)
	}
	// routes.go:2792 chatPrompt(..., truncate) -> server/prompt.go:80 imageTaggedMessages(m, msgs, 0, false)
	renderMsgs, images := imageTaggedMessages(msgs)
	// prompt.go:86 renderPrompt -> prompt.go:152, think == nil for a model without thinking.
	var b bytes.Buffer
	err := m.Template.Execute(&b, template.Values{
		Messages: renderMsgs, Tools: req.Tools, Think: false, ThinkLevel: "", IsThinkSet: false,
	})
	if err != nil {
		return "", 0, err
	}
	return b.String(), images, nil
}

// imageTaggedMessages is server/prompt.go:94-133 for a model with no RENDERER and not mllama:
// every image becomes the tag [img-N], N counting images across the conversation; it replaces the
// next "[img]" in the content, or else all tags go in front of the content.
func imageTaggedMessages(msgs []api.Message) ([]api.Message, int) {
	renderMsgs := slices.Clone(msgs)
	media := 0
	for cnt, msg := range renderMsgs {
		var prefix string
		prompt := msg.Content
		for range msg.Images {
			imgTag := fmt.Sprintf("[img-%d]", media) // llm.NewMediaData(len(media), i).ID
			media++
			if !strings.Contains(prompt, "[img]") {
				prefix += imgTag
			} else {
				prompt = strings.Replace(prompt, "[img]", imgTag, 1)
			}
		}
		renderMsgs[cnt].Content = prefix + prompt
	}
	return renderMsgs, media
}

func main() {
	var req request
	dec := json.NewDecoder(os.Stdin)
	if err := dec.Decode(&req); err != nil {
		fail(2, "bad request: %v", err)
	}
	tmpl, system, messages := req.Template, req.System, req.Messages
	if req.Modelfile != "" {
		var err error
		if tmpl, system, messages, err = fromModelfile(req.Modelfile); err != nil {
			fail(3, "modelfile error: %v", err)
		}
	}
	var detected string
	if tmpl == "" && req.Detect != "" {
		// server/model.go:99 detectChatTemplate: the stored Jinja nearest to the GGUF's
		// chat_template (Levenshtein distance < 100) gives its Go template.
		named, err := template.Named(req.Detect)
		if err != nil {
			fail(3, "template detection: %v", err)
		}
		tmpl, detected = string(named.Bytes), named.Name
	}
	m, err := create(tmpl, system, messages)
	if err != nil {
		fail(3, "%v", err)
	}
	out := response{Template: tmpl, System: m.System, Messages: m.Messages, Detected: detected}
	out.Results = []result{}
	if out.Messages == nil {
		out.Messages = []api.Message{}
	}
	for _, r := range req.Requests {
		prompt, images, err := chat(m, r)
		if err != nil {
			msg := err.Error()
			out.Results = append(out.Results, result{Error: &msg})
			continue
		}
		out.Results = append(out.Results, result{Prompt: &prompt, Images: images})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fail(4, "write error: %v", err)
	}
}
