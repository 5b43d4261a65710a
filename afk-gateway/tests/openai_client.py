"""The official `openai` Python client (the version `.ci/run` pins) against
afk-gateway, as a voice client uses it: a chat completion streamed and not,
a multi-turn history, and the errors a client must be able to read.

Environment: GATEWAY_URL (the gateway's base URL), GATEWAY_TOKEN, MODEL,
and SAYS (a word every reply must contain). Prints one JSON report on
standard output; the Rust test that starts it checks the report.
"""
import json
import os
import sys

import openai

url = os.environ["GATEWAY_URL"] + "/v1"
token = os.environ["GATEWAY_TOKEN"]
model = os.environ["MODEL"]
client = openai.OpenAI(base_url=url, api_key=token, max_retries=0, timeout=120)
history = [
    {"role": "system", "content": "Du bist ein Sprachassistent."},
    {"role": "user", "content": "Wie spät ist es?"},
    {"role": "assistant", "content": "Kurz nach drei."},
    {"role": "user", "content": "Und das Wetter? ☀️"},
]
report = {"version": openai.__version__}

whole = client.chat.completions.create(model=model, messages=history)
report["whole"] = {
    "id": whole.id,
    "object": whole.object,
    "model": whole.model,
    "content": whole.choices[0].message.content,
    "role": whole.choices[0].message.role,
    "finish_reason": whole.choices[0].finish_reason,
    "usage": whole.usage.model_dump() if whole.usage else None,
}

chunks = list(client.chat.completions.create(
    model=model, messages=history, stream=True,
    stream_options={"include_usage": True}))
report["stream"] = {
    "ids": sorted({c.id for c in chunks}),
    "objects": sorted({c.object for c in chunks}),
    "roles": [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role],
    "contents": [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content],
    "finish_reasons": [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
    "usage": [c.usage.model_dump() for c in chunks if c.usage],
}

# The streaming helper the SDK documents too.
with client.chat.completions.stream(model=model, messages=history) as stream:
    report["helper"] = stream.get_final_completion().choices[0].message.content

try:
    client.chat.completions.create(model="gpt-4o", messages=history)
    report["bad_model"] = "accepted"
except openai.BadRequestError as e:
    report["bad_model"] = {"status": e.status_code, "message": e.message}

try:
    openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).chat.completions.create(
        model=model, messages=history)
    report["bad_key"] = "accepted"
except openai.AuthenticationError as e:
    report["bad_key"] = {"status": e.status_code, "message": e.message}

json.dump(report, sys.stdout, ensure_ascii=False)
