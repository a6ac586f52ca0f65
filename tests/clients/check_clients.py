"""Runs the official `ollama` and `openai` Python clients against a running HyperLlama.

Usage: check_clients.py BASE_URL MODEL TOOLS_TEMPLATE_FILE

BASE_URL is the server (http://127.0.0.1:PORT), MODEL a chat model in its store (SmolLM2
in the tests), TOOLS_TEMPLATE_FILE a Jinja chat template that renders tools and prefills
`<tool_call>` (the server tests' fixture); the script creates `MODEL-tools` from MODEL with
it. Each check calls a client the way applications do and asserts the fields the client
parses; the first failure raises, so the exit status is non-zero and the traceback says
which call and field. Greedy sampling and few tokens keep it quick.
"""

import json
import sys

import ollama
import openai

BASE, MODEL, TEMPLATE_FILE = sys.argv[1], sys.argv[2], sys.argv[3]
TOOLS_MODEL = MODEL + "-tools"
GREEDY = {"temperature": 0, "num_predict": 12}


def check(name, fn):
    fn()
    print(f"ok   {name}", flush=True)


def get_weather(city: str) -> str:
    """Get the current weather in a city

    Args:
      city: The city's name
    """
    return "sunny"


o = ollama.Client(host=BASE)


def ollama_generate():
    r = o.generate(model=MODEL, prompt="What is the capital of France?", options=GREEDY)
    assert r.done and r.response, r
    assert r.model == MODEL and r.done_reason in ("stop", "length"), r
    assert r.eval_count and r.eval_count <= 12 and r.prompt_eval_count, r
    assert r.total_duration and r.eval_duration is not None and r.created_at, r
    chunks = list(o.generate(model=MODEL, prompt="What is the capital of France?",
                             options=GREEDY, stream=True))
    assert chunks[-1].done and not any(c.done for c in chunks[:-1]), chunks
    assert "".join(c.response for c in chunks) == r.response, (chunks, r)


def ollama_chat():
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hello."}]
    r = o.chat(model=MODEL, messages=messages, options=GREEDY)
    assert r.message.role == "assistant" and r.message.content, r
    assert r.done and r.eval_count, r
    assert r.message.tool_calls is None and r.message.thinking is None, r
    chunks = list(o.chat(model=MODEL, messages=messages, options=GREEDY, stream=True))
    assert chunks[-1].done and chunks[-1].done_reason in ("stop", "length"), chunks[-1]
    assert "".join(c.message.content or "" for c in chunks) == r.message.content


def ollama_list_show_ps():
    models = o.list().models
    names = [m.model for m in models]
    assert MODEL + ":latest" in names or MODEL in names, names
    m = models[names.index(MODEL + ":latest" if MODEL + ":latest" in names else MODEL)]
    assert m.size and m.digest and m.modified_at and m.details.format == "gguf", m
    s = o.show(MODEL)
    assert s.modelfile and s.template and s.details.family and s.modelinfo, s
    assert "completion" in (s.capabilities or []), s.capabilities
    assert s.modified_at is not None
    running = o.ps().models
    assert any((p.model or "").startswith(MODEL) for p in running), running
    p = running[0]
    assert p.size and p.expires_at and p.size_vram is not None and p.context_length, p


def ollama_tools():
    with open(TEMPLATE_FILE, encoding="utf-8") as f:
        template = f.read()
    r = o.create(model=TOOLS_MODEL, from_=MODEL, template=template)
    assert r.status == "success", r
    assert "tools" in (o.show(TOOLS_MODEL).capabilities or [])
    ask = [{"role": "user", "content": "Call get_weather with city Paris."}]
    # A Python function as the tool: the client builds its JSON schema.
    r = o.chat(model=TOOLS_MODEL, messages=ask, tools=[get_weather],
               options={"temperature": 0, "num_predict": 30})
    calls = r.message.tool_calls
    assert calls and calls[0].function.name == "get_weather", r
    assert calls[0].function.arguments == {"city": "Paris"}, calls
    streamed = [c for c in o.chat(model=TOOLS_MODEL, messages=ask, tools=[get_weather],
                                  options={"temperature": 0, "num_predict": 30}, stream=True)
                if c.message.tool_calls]
    assert streamed and streamed[0].message.tool_calls[0].function.name == "get_weather"
    # The call and its result go back into the conversation.
    follow = ask + [r.message, {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    r = o.chat(model=TOOLS_MODEL, messages=follow, tools=[get_weather],
               options={"temperature": 0, "num_predict": 4})
    assert r.done, r
    try:
        o.chat(model=MODEL, messages=ask, think=True)
        raise AssertionError("think=True on a model without thinking must fail")
    except ollama.ResponseError as e:
        assert e.status_code == 400 and "does not support thinking" in e.error, e


c = openai.OpenAI(base_url=BASE + "/v1", api_key="hyperllama")
HELLO = [{"role": "user", "content": "Say hello."}]


def openai_chat():
    r = c.chat.completions.create(model=MODEL, messages=HELLO, temperature=0, max_tokens=12)
    ch = r.choices[0]
    assert r.object == "chat.completion" and r.id and r.model == MODEL, r
    assert ch.message.role == "assistant" and ch.message.content, r
    assert ch.finish_reason in ("stop", "length") and ch.message.tool_calls is None, r
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == (
        r.usage.prompt_tokens + r.usage.completion_tokens), r.usage
    stream = c.chat.completions.create(model=MODEL, messages=HELLO, temperature=0,
                                       max_tokens=12, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(k.choices[0].delta.content or "" for k in chunks if k.choices)
    assert text == ch.message.content, (text, ch.message.content)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [k.choices[0].finish_reason for k in chunks if k.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0, chunks[-1]


def openai_tools():
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    ask = [{"role": "user", "content": "Call get_weather with city Paris."}]
    r = c.chat.completions.create(model=TOOLS_MODEL, messages=ask, tools=tools,
                                  temperature=0, max_tokens=30)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls", r
    call = ch.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_"), call
    assert call.function.name == "get_weather", call
    assert json.loads(call.function.arguments) == {"city": "Paris"}, call
    # Streamed: the SDK's accumulator (stream helper) puts the call back together.
    with c.chat.completions.stream(model=TOOLS_MODEL, messages=ask, tools=tools,
                                   temperature=0, max_tokens=30) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    fc = final.choices[0]
    assert fc.finish_reason == "tool_calls", final
    assert fc.message.tool_calls[0].function.name == "get_weather", final
    assert json.loads(fc.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    # The assistant's call and the tool's answer go back as OpenAI shapes them.
    follow = ask + [ch.message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r = c.chat.completions.create(model=TOOLS_MODEL, messages=follow, tools=tools,
                                  temperature=0, max_tokens=4)
    assert r.choices[0].finish_reason, r
    try:
        c.chat.completions.create(model=MODEL, messages=ask, tools=tools)
        raise AssertionError("tools on a model whose template ignores them must fail")
    except openai.BadRequestError as e:
        assert "does not support tools" in str(e), e


def openai_completions_and_models():
    r = c.completions.create(model=MODEL, prompt="The capital of France is",
                             temperature=0, max_tokens=8)
    assert r.object == "text_completion" and r.choices[0].text, r
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens
    chunks = list(c.completions.create(model=MODEL, prompt="The capital of France is",
                                       temperature=0, max_tokens=8, stream=True))
    assert "".join(k.choices[0].text for k in chunks if k.choices) == r.choices[0].text
    ids = [m.id for m in c.models.list()]
    assert any(i.startswith(MODEL) for i in ids), ids
    m = c.models.retrieve(MODEL)
    assert m.id == MODEL and m.object == "model" and m.owned_by, m


for name, fn in [
    ("ollama.generate (stream and not)", ollama_generate),
    ("ollama.chat (stream and not)", ollama_chat),
    ("ollama.list, ollama.show, ollama.ps", ollama_list_show_ps),
    ("ollama.create, ollama.chat with tools, think refused", ollama_tools),
    ("openai chat.completions (stream with usage and not)", openai_chat),
    ("openai chat.completions with tools (stream and not)", openai_tools),
    ("openai completions, models.list, models.retrieve", openai_completions_and_models),
]:
    check(name, fn)
print("all client checks passed")
