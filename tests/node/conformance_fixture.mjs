// The fixture MCP server for the official conformance suite's server scenarios, run by
// the edge as a stdio backend (tests/suites/conformance.rs). It implements the tools,
// resources and prompts those scenarios name (test_simple_text, test://static-text,
// test_simple_prompt, ...) with the official TypeScript SDK's low-level Server class;
// everything the suite checks about transport (Streamable HTTP, sessions, SSE, Host
// checks) is the edge's own work.
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

// A 1x1 PNG and a tiny WAV, base64.
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

const server = new Server(
  { name: "mcp-edge-conformance-fixture", version: "1.0.0" },
  {
    capabilities: {
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    },
  },
);

const noArgs = { type: "object", properties: {} };
const text = (t) => ({ content: [{ type: "text", text: t }] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (data, extra) =>
  extra.sendNotification({ method: "notifications/message", params: { level: "info", data } });

async function elicit(extra, message, properties) {
  try {
    const r = await extra.sendRequest(
      {
        method: "elicitation/create",
        params: { mode: "form", message, requestedSchema: { type: "object", properties, required: [] } },
      },
      ElicitResultSchema,
    );
    return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
  } catch (e) {
    return text(`Elicitation not supported or error: ${e.message}`);
  }
}

// name → [description, inputSchema, handler(args, extra)]
const tools = {
  test_simple_text: ["Returns one text block", noArgs, async () => text("This is a simple text response for testing.")],
  test_image_content: ["Returns an image", noArgs, async () => ({ content: [{ type: "image", data: PNG, mimeType: "image/png" }] })],
  test_audio_content: ["Returns audio", noArgs, async () => ({ content: [{ type: "audio", data: WAV, mimeType: "audio/wav" }] })],
  test_embedded_resource: ["Returns an embedded resource", noArgs, async () => ({
    content: [{ type: "resource", resource: { uri: "test://embedded-resource", mimeType: "text/plain", text: "This is an embedded resource content." } }],
  })],
  test_multiple_content_types: ["Returns text, image and a resource", noArgs, async () => ({
    content: [
      { type: "text", text: "Multiple content types test:" },
      { type: "image", data: PNG, mimeType: "image/png" },
      { type: "resource", resource: { uri: "test://mixed-content-resource", mimeType: "application/json", text: JSON.stringify({ test: "data", value: 123 }) } },
    ],
  })],
  test_tool_with_logging: ["Logs while it runs", noArgs, async (_a, extra) => {
    for (const step of ["Tool execution started", "Tool processing data", "Tool execution completed"]) {
      await log(step, extra);
      await sleep(30);
    }
    return text("Tool with logging executed successfully");
  }],
  test_tool_with_progress: ["Reports progress", noArgs, async (_a, extra) => {
    const progressToken = extra._meta?.progressToken ?? 0;
    for (const progress of [0, 50, 100]) {
      await extra.sendNotification({
        method: "notifications/progress",
        params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
      });
      await sleep(30);
    }
    return text(String(progressToken));
  }],
  test_error_handling: ["Always fails", noArgs, async () => ({
    isError: true,
    content: [{ type: "text", text: "This tool intentionally returns an error for testing" }],
  })],
  test_reconnection: ["Answers after a short pause", noArgs, async () => {
    await sleep(100);
    return text("Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.");
  }],
  test_sampling: ["Asks the client's model", { type: "object", properties: { prompt: { type: "string" } }, required: ["prompt"] }, async (args, extra) => {
    try {
      const r = await extra.sendRequest(
        { method: "sampling/createMessage", params: { messages: [{ role: "user", content: { type: "text", text: args.prompt } }], maxTokens: 100 } },
        CreateMessageResultSchema,
      );
      return text(`LLM response: ${r.content?.text ?? "No response"}`);
    } catch (e) {
      return text(`Sampling not supported or error: ${e.message}`);
    }
  }],
  test_elicitation: ["Asks the user", { type: "object", properties: { message: { type: "string" } }, required: ["message"] }, async (args, extra) => {
    try {
      const r = await extra.sendRequest(
        {
          method: "elicitation/create",
          params: { mode: "form", message: args.message, requestedSchema: { type: "object", properties: { response: { type: "string", description: "User's response" } }, required: ["response"] } },
        },
        ElicitResultSchema,
      );
      return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
    } catch (e) {
      return text(`Elicitation not supported or error: ${e.message}`);
    }
  }],
  test_elicitation_sep1034_defaults: ["Elicitation with defaults", noArgs, async (_a, extra) =>
    elicit(extra, "Please review and update the form fields with defaults", {
      name: { type: "string", description: "User name", default: "John Doe" },
      age: { type: "integer", description: "User age", default: 30 },
      score: { type: "number", description: "User score", default: 95.5 },
      status: { type: "string", description: "User status", enum: ["active", "inactive", "pending"], default: "active" },
      verified: { type: "boolean", description: "Verification status", default: true },
    })],
  test_elicitation_sep1330_enums: ["Elicitation with enum variants", noArgs, async (_a, extra) =>
    elicit(extra, "Please select options from the enum fields", {
      untitledSingle: { type: "string", description: "Select one option", enum: ["option1", "option2", "option3"] },
      titledSingle: { type: "string", description: "Select one option with titles", oneOf: [
        { const: "value1", title: "First Option" }, { const: "value2", title: "Second Option" }, { const: "value3", title: "Third Option" }] },
      legacyEnum: { type: "string", description: "Select one option (legacy)", enum: ["opt1", "opt2", "opt3"], enumNames: ["Option One", "Option Two", "Option Three"] },
      untitledMulti: { type: "array", description: "Select multiple options", minItems: 1, maxItems: 3, items: { type: "string", enum: ["option1", "option2", "option3"] } },
      titledMulti: { type: "array", description: "Select multiple options with titles", minItems: 1, maxItems: 3, items: { anyOf: [
        { const: "value1", title: "First Choice" }, { const: "value2", title: "Second Choice" }, { const: "value3", title: "Third Choice" }] } },
    })],
  json_schema_2020_12_tool: ["JSON Schema 2020-12 input", {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    $defs: { address: { type: "object", properties: { street: { type: "string" }, city: { type: "string" } } } },
    properties: { name: { type: "string" }, address: { $ref: "#/$defs/address" } },
    additionalProperties: false,
  }, async (args) => text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`)],
};

server.setRequestHandler(ListToolsRequestSchema, async () => ({
  tools: Object.entries(tools).map(([name, [description, inputSchema]]) => ({ name, description, inputSchema })),
}));
server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
  const tool = tools[request.params.name];
  if (!tool) {
    return { isError: true, content: [{ type: "text", text: `unknown tool ${request.params.name}` }] };
  }
  return tool[2](request.params.arguments ?? {}, extra);
});

const resources = {
  "test://static-text": { name: "static-text", mimeType: "text/plain", text: "This is the content of the static text resource." },
  "test://static-binary": { name: "static-binary", mimeType: "image/png", blob: PNG },
  "test://watched-resource": { name: "watched-resource", mimeType: "text/plain", text: "Watched resource content" },
};
server.setRequestHandler(ListResourcesRequestSchema, async () => ({
  resources: Object.entries(resources).map(([uri, r]) => ({ uri, name: r.name, mimeType: r.mimeType })),
}));
server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
  resourceTemplates: [{ uriTemplate: "test://template/{id}/data", name: "template", mimeType: "application/json" }],
}));
server.setRequestHandler(ReadResourceRequestSchema, async (request) => {
  const uri = request.params.uri;
  const r = resources[uri];
  if (r) {
    return { contents: [{ uri, mimeType: r.mimeType, ...(r.text !== undefined ? { text: r.text } : { blob: r.blob }) }] };
  }
  const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
  if (m) {
    return { contents: [{ uri, mimeType: "application/json", text: JSON.stringify({ id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` }) }] };
  }
  throw Object.assign(new Error(`Resource not found: ${uri}`), { code: -32002 });
});
const subscriptions = new Set();
server.setRequestHandler(SubscribeRequestSchema, async (request) => {
  subscriptions.add(request.params.uri);
  return {};
});
server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
  subscriptions.delete(request.params.uri);
  return {};
});

const PROMPTS = {
  test_simple_prompt: { description: "A prompt without arguments", arguments: [] },
  test_prompt_with_arguments: { description: "A prompt with two required arguments", arguments: [
    { name: "arg1", description: "First test argument", required: true },
    { name: "arg2", description: "Second test argument", required: true }] },
  test_prompt_with_embedded_resource: { description: "A prompt embedding a resource", arguments: [
    { name: "resourceUri", description: "URI of the resource to embed", required: true }] },
  test_prompt_with_image: { description: "A prompt with an image", arguments: [] },
};
server.setRequestHandler(ListPromptsRequestSchema, async () => ({
  prompts: Object.entries(PROMPTS).map(([name, p]) => ({ name, ...p })),
}));
server.setRequestHandler(GetPromptRequestSchema, async (request) => {
  const a = request.params.arguments ?? {};
  const user = (content) => ({ role: "user", content });
  switch (request.params.name) {
    case "test_simple_prompt":
      return { messages: [user({ type: "text", text: "This is a simple prompt for testing." })] };
    case "test_prompt_with_arguments":
      return { messages: [user({ type: "text", text: `Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'` })] };
    case "test_prompt_with_embedded_resource":
      return { messages: [
        user({ type: "resource", resource: { uri: a.resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." } }),
        user({ type: "text", text: "Please process the embedded resource above." })] };
    case "test_prompt_with_image":
      return { messages: [
        user({ type: "image", data: PNG, mimeType: "image/png" }),
        user({ type: "text", text: "Please analyze the image above." })] };
    default:
      throw Object.assign(new Error(`unknown prompt ${request.params.name}`), { code: -32602 });
  }
});

server.setRequestHandler(SetLevelRequestSchema, async () => ({}));
server.setRequestHandler(CompleteRequestSchema, async () => ({ completion: { values: [], total: 0, hasMore: false } }));

await server.connect(new StdioServerTransport());
